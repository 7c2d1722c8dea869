"""Exceptions the library raises to its caller.

Errors from the model's own code never arrive here: they go back to the model as text.
Every message names the cause and what to do about it.
"""

from __future__ import annotations


class RLMError(Exception):
    """Base class of every error raised by recursive-llm."""


class ConfigurationError(RLMError, ValueError):
    """An argument to `RLM(...)` or to a call is invalid."""


class ContextError(RLMError, ValueError):
    """The context given to `completion` is empty or of a type the sandbox cannot hold."""


class APIKeyNotFoundError(RLMError):
    """The model's provider needs an API key and none was given or found in the environment."""


class ModelNotFoundError(RLMError):
    """The model name is unknown to LiteLLM or the provider answered that it does not exist."""


class ProviderError(RLMError):
    """The provider failed after retries (network, rate limit, server error)."""


class SandboxError(RLMError):
    """The sandbox could not be chosen, started or used."""


class MaxIterationsError(RLMError):
    """A node ran out of iterations and the caller asked for strict behaviour."""


class NoAnswerError(RLMError):
    """The run ended without an answer founded on its code's output, and the caller asked for strict.

    `reason` is "no_answer" (the last reply had no FINAL) or "unfounded" (its answer was never shown
    by any output: a guess); `last_reply` is that reply, so nothing the model wrote is lost.
    """

    def __init__(self, message: str, *, reason: str, last_reply: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.last_reply = last_reply


class BudgetExceededError(RLMError):
    """A budget of the run (LM calls, tokens, USD or time) is used up.

    `limit` names the setting; with `strict=True` the run raises it with `partial_answer`, the
    answer the model gave in its last step (or None).
    """

    def __init__(self, message: str, *, limit: str = "max_llm_calls", partial_answer: str | None = None) -> None:
        super().__init__(message)
        self.limit = limit
        self.partial_answer = partial_answer
