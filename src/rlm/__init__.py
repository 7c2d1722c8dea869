"""recursive-llm: Recursive Language Models (Zhang & Khattab, 2025) on DSPy.

The context is loaded once into a sandboxed Python REPL as `context`; the model explores it with
code and sub-calls and answers with FINAL(...). Start with `RLM(model=...).completion(query, context)`.
"""

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

__version__ = "0.1.0"

__all__ = [
    "RLM",
    "APIKeyNotFoundError",
    "BudgetExceededError",
    "ConfigurationError",
    "ContextError",
    "LMCalled",
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
    "register_sandbox",
]
