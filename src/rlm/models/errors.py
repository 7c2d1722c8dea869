"""Translate DSPy/LiteLLM failures into the library's errors, with the fix in the message."""

from __future__ import annotations

from rlm.errors import APIKeyNotFoundError, ModelNotFoundError, ProviderError, RLMError


def translate_lm_error(exc: BaseException, model: str) -> RLMError:
    """The RLMError a caller should see for an exception raised by an LM call."""
    if isinstance(exc, RLMError):
        return exc
    names = {cls.__name__ for cls in type(exc).__mro__}
    text = str(exc)
    lowered = text.lower()
    status = getattr(exc, "status", None) or getattr(exc, "status_code", None)
    auth = {"LMNotConfiguredError", "LMAuthError", "AuthenticationError"}
    if names & auth or status == 401 or "no api key" in lowered:
        return APIKeyNotFoundError(
            f"API key not found or rejected for model '{model}': pass api_key=... or set the provider's "
            f"key variable ({text.splitlines()[0] if text else type(exc).__name__})"
        )
    # DSPy's native engine reports a 404 as an invalid request; LiteLLM as NotFoundError.
    if {"LMUnsupportedModelError", "NotFoundError"} & names or status == 404 or "model_not_found" in lowered:
        return ModelNotFoundError(
            f"Model not found: '{model}'. The provider answered: {text.splitlines()[0] if text else exc!r}. "
            "Check the model name (LiteLLM form, e.g. 'openai/gpt-4o-mini') and, for local servers, api_base."
        )
    return ProviderError(f"The call to model '{model}' failed: {type(exc).__name__}: {text[:500]}")


# Errors after which continuing the run cannot help: they stop the whole tree.
FATAL_ERRORS = (APIKeyNotFoundError, ModelNotFoundError)
