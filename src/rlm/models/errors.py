"""Translate DSPy/LiteLLM failures into the library's errors, with the fix in the message."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

from rlm.errors import APIKeyNotFoundError, ModelNotFoundError, ProviderError, RLMError
from rlm.tracking.redact import redact


def translate_lm_error(exc: BaseException, model: str, secrets: Iterable[str] | None = None) -> RLMError:
    """The RLMError a caller should see for an exception raised by an LM call. Its text never holds
    `secrets` (default: the key variables in the environment): a provider that quotes the key in its
    error (a 401 echoing it) would hand it to the model's code through a sub-call's error, and to the
    terminal and the history (attack round 18)."""
    if isinstance(exc, RLMError):
        return exc
    names = {cls.__name__ for cls in type(exc).__mro__}
    text = redact(str(exc), secrets)
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
        answered = text.splitlines()[0] if text else type(exc).__name__
        return ModelNotFoundError(
            f"Model not found: '{model}'. The provider answered: {answered}. "
            "Check the model name (LiteLLM form, e.g. 'openai/gpt-4o-mini') and, for local servers, api_base."
        )
    detail = f"{type(exc).__name__}: {text[:500]}"
    url = url_tried(exc)
    if url and urlsplit(url).netloc not in text:  # DSPy's native client names host:port itself
        detail += f" (the request went to {url})"
    return ProviderError(f"The call to model '{model}' failed: {detail}")


def url_tried(exc: BaseException) -> str | None:
    """The URL the failed request went to, without its query or credentials, or None if unknown.

    It is taken from the innermost exception in the chain that carries a request (httpx's or the
    OpenAI SDK's): LiteLLM's own exceptions carry a placeholder request to https://api.openai.com/v1
    whatever the real address. The query is dropped because some providers (Gemini) put the key there.
    """
    url = None
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        try:
            candidate = current.request.url  # type: ignore[attr-defined]
        except Exception:  # no request; httpx raises RuntimeError for an error built without one
            candidate = None
        if candidate is not None:
            url = str(candidate)
        current = current.__cause__ or current.__context__
    if url is None:
        return None
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


# Errors after which continuing the run cannot help: they stop the whole tree.
FATAL_ERRORS = (APIKeyNotFoundError, ModelNotFoundError)
