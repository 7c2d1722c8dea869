"""Model-name resolution to `dspy.LM`, key checks, and provider-error translation."""

from rlm.models.errors import translate_lm_error
from rlm.models.resolve import build_lm, qualified_name

__all__ = ["build_lm", "qualified_name", "translate_lm_error"]
