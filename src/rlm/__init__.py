"""recursive-llm: Recursive Language Models (Zhang & Khattab, 2025) on DSPy.

The context is loaded once into a sandboxed Python REPL as `context`; the model explores it with
code and sub-calls and answers with FINAL(...). Start with `RLM(model=...).completion(query, context)`.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

# Price tables and model metadata come from the copies DSPy and LiteLLM ship: without this both
# fetch them from GitHub on first use (LiteLLM retrying for ~7 s when offline). A library must not
# phone home for data it has; an explicit setting by the user is kept.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

__version__ = "0.1.0"

# Public names -> the module defining them, imported on first use: `import rlm` and `rlm --help`
# stay free of DSPy (~1 s) and LiteLLM (~3 s).
_EXPORTS = {
    "RLM": "rlm.facade",
    "APIKeyNotFoundError": "rlm.errors",
    "BudgetExceededError": "rlm.errors",
    "ConfigurationError": "rlm.errors",
    "ContextError": "rlm.errors",
    "LMCalled": "rlm.events",
    "LimitReached": "rlm.events",
    "MaxIterationsError": "rlm.errors",
    "ModelNotFoundError": "rlm.errors",
    "ModelUsage": "rlm.tracking",
    "NodeFinished": "rlm.events",
    "NodeStarted": "rlm.events",
    "ProviderError": "rlm.errors",
    "RLMConfig": "rlm.config",
    "RLMError": "rlm.errors",
    "RLMModule": "rlm.engine",
    "RLMResult": "rlm.engine",
    "RestrictedInterpreter": "rlm.sandbox.dspy_interop",
    "SandboxError": "rlm.errors",
    "StepExecuted": "rlm.events",
    "StepRecord": "rlm.engine",
    "BatchResult": "rlm.batch",
    "batch": "rlm.batch",
    "register_sandbox": "rlm.sandbox",
}

__all__ = [
    "RLM",
    "APIKeyNotFoundError",
    "BatchResult",
    "BudgetExceededError",
    "ConfigurationError",
    "ContextError",
    "LMCalled",
    "LimitReached",
    "MaxIterationsError",
    "ModelNotFoundError",
    "ModelUsage",
    "NodeFinished",
    "NodeStarted",
    "ProviderError",
    "RLMConfig",
    "RLMError",
    "RLMModule",
    "RLMResult",
    "RestrictedInterpreter",
    "SandboxError",
    "StepExecuted",
    "StepRecord",
    "batch",
    "register_sandbox",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'rlm' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


if TYPE_CHECKING:
    from rlm.batch import BatchResult, batch
    from rlm.config import RLMConfig
    from rlm.engine import RLMModule, RLMResult, StepRecord
    from rlm.errors import (
        APIKeyNotFoundError,
        BudgetExceededError,
        ConfigurationError,
        ContextError,
        MaxIterationsError,
        ModelNotFoundError,
        ProviderError,
        RLMError,
        SandboxError,
    )
    from rlm.events import LMCalled, NodeFinished, NodeStarted, StepExecuted
    from rlm.facade import RLM
    from rlm.sandbox import register_sandbox
    from rlm.sandbox.dspy_interop import RestrictedInterpreter
    from rlm.tracking import ModelUsage


# Last, so that the check can tell this `__init__` (it has `_EXPORTS`) from another project's.
from rlm.install_check import warn_about_conflicts as _warn_about_conflicts  # noqa: E402

_warn_about_conflicts()
