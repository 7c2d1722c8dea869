"""Model-name resolution to `dspy.LM`, key checks, and provider-error translation.

Names are imported on first use, so `rlm.models.local` (the `rlm serve-local` path) loads no DSPy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "build_lm": "rlm.models.resolve",
    "qualified_name": "rlm.models.resolve",
    "translate_lm_error": "rlm.models.errors",
}

__all__ = ["build_lm", "qualified_name", "translate_lm_error"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'rlm.models' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


if TYPE_CHECKING:
    from rlm.models.errors import translate_lm_error
    from rlm.models.resolve import build_lm, qualified_name
