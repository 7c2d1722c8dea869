"""Model names -> configured `dspy.LM` objects, with key checks before any request is sent.

Called by the `RLM` facade. Any LiteLLM model string works; a few short names the README uses
are mapped to their full LiteLLM form. Which variables a provider needs comes from LiteLLM's own
`validate_environment`, not from a list kept here.
"""

from __future__ import annotations

import os
from typing import Any

import dspy
from dspy.clients.lm import _is_openai_reasoning_model  # DSPy's rule for max_completion_tokens

from rlm.errors import APIKeyNotFoundError, ConfigurationError, ModelNotFoundError
from rlm.models.server_engine import NO_KEY, AsyncServerEngine, ServerEngine

# Short names people type that providers do not accept verbatim.
ALIASES = {
    "claude-sonnet-4": "anthropic/claude-sonnet-4-20250514",
    "claude-opus-4": "anthropic/claude-opus-4-20250514",
}
# Output limit sent to OpenAI-compatible servers reached through api_base when none is given:
# some (llama.cpp's Python server) ignore `max_completion_tokens` and would write until the
# window is full.
DEFAULT_LOCAL_MAX_TOKENS = 2048
# `RLM(model="local")`: the bundled small model behind llama.cpp's server (extra `[local]`).
LOCAL_MODEL = "local"
# A 1.5B model writes ~24 tokens/s here: a shorter reply limit keeps a rambling step under 30 s.
LOCAL_MAX_TOKENS = 768


# Importing LiteLLM costs about 3 s of CPU here, and DSPy's native engine never needs it for these
# providers; so the common cases are answered from this table and only the rest ask LiteLLM.
_BARE_NAME_PROVIDERS = (
    ("gpt-", "openai"),
    ("o1", "openai"),
    ("o3", "openai"),
    ("o4", "openai"),
    ("chatgpt-", "openai"),
    ("claude-", "anthropic"),
    ("gemini-", "gemini"),
)
KEY_VARIABLES = {
    "openai": ("OPENAI_API_KEY",),
    "anthropic": ("ANTHROPIC_API_KEY",),
    "openrouter": ("OPENROUTER_API_KEY",),
    "gemini": ("GEMINI_API_KEY",),
    "azure": ("AZURE_API_KEY",),
    "groq": ("GROQ_API_KEY",),
    "mistral": ("MISTRAL_API_KEY",),
    "together_ai": ("TOGETHERAI_API_KEY", "TOGETHER_API_KEY"),
    "deepseek": ("DEEPSEEK_API_KEY",),
    "ollama": (),
    "ollama_chat": (),
    "hosted_vllm": (),
    "lm_studio": (),
}


def is_local_model(model: object) -> bool:
    """Whether `model` names the bundled local model ('local', in any case: `--model Local` too)."""
    return isinstance(model, str) and model.strip().lower() == LOCAL_MODEL


def _litellm_quietly() -> Any:
    """LiteLLM, with its "Provider List: ..." banner (printed on stdout before it raises) turned off."""
    import litellm

    litellm.suppress_debug_info = True
    return litellm


def unknown_name_note(name: str) -> str:
    """ "" when LiteLLM's bundled model table has `name` (in any of its keys: "anthropic.NAME-v1:0" counts,
    since the table drops retired names from their provider's own spelling); else a sentence saying
    it does not, with the closest names it does have."""
    import difflib

    table = _litellm_quietly().model_cost
    bare = name.split("/", 1)[1] if "/" in name else name
    if any(bare in key for key in table):
        return ""
    close = difflib.get_close_matches(bare, [key.rsplit("/", 1)[-1] for key in table], n=3, cutoff=0.8)
    hint = f"; did you mean {' or '.join(repr(c) for c in dict.fromkeys(close))}?" if close else ""
    return f" Also, LiteLLM's model table has no '{bare}' (check the spelling, unless the model is newer{hint})."


def qualified_name(model: str, api_base: str | None = None) -> str:
    """`provider/model` for a model name, or ModelNotFoundError if LiteLLM cannot place it."""
    name = model.strip()
    if not name:
        raise ConfigurationError("model must be a non-empty model name such as 'openai/gpt-4o-mini'")
    name = ALIASES.get(name, name)
    if "/" in name:
        return name
    for prefix, provider in _BARE_NAME_PROVIDERS:
        if name.startswith(prefix):
            return f"{provider}/{name}"
    if api_base:  # a bare name served by the OpenAI-compatible endpoint the caller named
        return f"openai/{name}"
    litellm = _litellm_quietly()
    try:
        _, provider, _, _ = litellm.get_llm_provider(name)
    except Exception:
        import difflib

        local = f" Did you mean '{LOCAL_MODEL}' (the bundled model)?" if difflib.get_close_matches(
            name.lower(), [LOCAL_MODEL], cutoff=0.6
        ) else ""  # fmt: skip
        raise ModelNotFoundError(
            f"Model not found: '{model}' is not a model name LiteLLM knows.{local} Use 'provider/model' "
            "(e.g. 'openai/gpt-4o-mini', 'anthropic/claude-sonnet-4-20250514', 'ollama/llama3.2'), "
            "or pass api_base=... for an OpenAI-compatible server."
        ) from None
    return f"{provider}/{name}"


def missing_key_variables(model: str) -> list[str]:
    """The key variables this model needs and the environment lacks (LiteLLM's view for the rest)."""
    provider = model.split("/", 1)[0]
    if provider in KEY_VARIABLES:
        wanted = KEY_VARIABLES[provider]
        return [] if not wanted or any(os.environ.get(v) for v in wanted) else list(wanted)
    try:
        report = _litellm_quietly().validate_environment(model=model)
    except Exception:
        return []
    return [v for v in report.get("missing_keys", []) if "KEY" in v or "TOKEN" in v]


# The build_lm setting a caller of this module passes to run before each request of an
# OpenAI-compatible server's engine (never sent to the provider).
BEFORE_REQUEST = "_rlm_before_request"


def build_lm(
    model: str | dspy.BaseLM,
    *,
    api_key: str | None = None,
    api_base: str | None = None,
    temperature: float | None = None,
    timeout: float | None = None,
    max_tokens: int | None = None,
    **lm_kwargs: Any,
) -> dspy.BaseLM:
    """A ready `dspy.LM` for `model`; an LM object passes through untouched.

    Every setting is one DSPy's native engine carries (api_key, api_base, timeout, generation
    options), so the providers lm15 knows (OpenAI, Anthropic, Gemini, OpenRouter, Groq, DeepSeek,
    Ollama, vLLM) never load LiteLLM; `openai/...` behind `api_base` goes through `ServerEngine`.
    """
    if isinstance(model, dspy.BaseLM):
        return model
    if not isinstance(model, str):
        raise ConfigurationError(f"model must be a model name or a dspy.BaseLM, got {type(model).__name__}")
    if is_local_model(model):
        return _local_lm(api_base, temperature, timeout, max_tokens, **lm_kwargs)
    name = qualified_name(model, api_base)
    before_request = lm_kwargs.pop(BEFORE_REQUEST, None)  # ours, for ServerEngine: never a request setting
    kwargs: dict[str, Any] = {"cache": False, "num_retries": 3, **lm_kwargs}
    if api_base:
        max_tokens = max_tokens or DEFAULT_LOCAL_MAX_TOKENS
    if api_key:
        kwargs["api_key"] = api_key
    elif api_base and name.startswith("openai/"):
        kwargs["api_key"] = os.environ.get("OPENAI_API_KEY") or NO_KEY
    else:
        missing = missing_key_variables(name)
        if missing:
            raise APIKeyNotFoundError(  # a typo in the name shows now, not after the key is set
                f"API key not found for model '{model}': set {' or '.join(missing)} "
                f"(in the environment or a .env file) or pass api_key=...{unknown_name_note(name)}"
            )
    if timeout is not None:
        kwargs["timeout"] = timeout
    engine = kwargs.get("engine", "auto")
    if api_base and name.startswith("openai/") and engine in ("auto", "lm15"):
        field = "max_completion_tokens" if _is_openai_reasoning_model(name) else "max_tokens"
        server = {
            "api_base": api_base,
            "api_key": kwargs.pop("api_key"),
            "timeout": kwargs.pop("timeout", None),
            "before_request": before_request,
        }
        kwargs["engine"] = ServerEngine(**server, max_tokens_field=field)
        kwargs["async_engine"] = AsyncServerEngine(**server, max_tokens_field=field)
    elif api_base:
        kwargs["api_base"] = api_base
        if engine == "litellm":  # LiteLLM's openai/ route writes max_completion_tokens
            extra_body = dict(kwargs.pop("extra_body", None) or {})
            extra_body.setdefault("max_tokens", max_tokens)
            kwargs["extra_body"] = extra_body
    try:
        return dspy.LM(name, temperature=temperature, max_tokens=max_tokens, **kwargs)
    except Exception as exc:  # dspy refuses some settings (e.g. temperature for reasoning models)
        raise ConfigurationError(f"Cannot configure model '{model}': {exc}") from exc


def _local_lm(
    api_base: str | None, temperature: float | None, timeout: float | None, max_tokens: int | None, **lm_kwargs: Any
) -> dspy.BaseLM:
    from rlm.models.local import MODEL_ALIAS, ensure_local_server
    from rlm.models.local_server import listener_check

    if api_base is None:
        api_base = ensure_local_server()
        # Each request checks that the bundled server's port is still this user's: a server that died
        # mid-run may have had its port taken by another user's process (docs/SECURITY.md).
        lm_kwargs[BEFORE_REQUEST] = listener_check()
    return build_lm(
        f"openai/{MODEL_ALIAS}",
        api_base=api_base,
        api_key=NO_KEY,
        temperature=0.0 if temperature is None else temperature,
        timeout=timeout,
        max_tokens=max_tokens or LOCAL_MAX_TOKENS,
        **lm_kwargs,
    )
