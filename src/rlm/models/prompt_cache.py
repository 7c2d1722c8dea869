"""Provider prompt caching for the engine's growing conversations, and the bundled server's cache.

A node's steps are one append-only conversation, so each step's prompt begins with the previous
one. `step_cache(lm, run_key)` is the `dspy.lm15.CacheConfig` that `engine.calls` sends with every
step so providers keep that prefix: Anthropic gets `cache_control` marks (on the system prompt and
the end of the conversation), OpenAI a `prompt_cache_key` per run, which routes a run's requests to
the machines that hold its prefix. `llama_server_cache_args()` is for `models.local`: llama.cpp's
Python server keeps one prompt in its KV cache; its RAM cache keeps the root's conversation while
sub-calls and children interleave with it.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # `models.local` imports this module and must not load DSPy
    import dspy
    from dspy.lm15 import CacheConfig

# Providers whose native path takes these settings; others cache automatically (Gemini, DeepSeek)
# or have no prompt cache to steer.
_MARKED = ("anthropic",)
_KEYED = ("openai",)

_decided: weakref.WeakKeyDictionary[Any, str | None] = weakref.WeakKeyDictionary()
_lock = threading.Lock()

# llama-cpp-python's RAM cache saves the model state after each completion and restores the one
# with the longest common prefix of the next prompt (LRU, bounded in bytes). A state of the
# bundled 1.5B model holds its whole context window's KV (~230 MB at 8k tokens): 4 GiB keeps
# ~16, room for a root conversation across a batch of sub-calls or another program's calls.
LLAMA_CACHE_BYTES = 4 << 30


def step_cache(lm: dspy.BaseLM, run_key: str) -> CacheConfig | None:
    """The prompt-cache setting for a node's step calls on `lm`, or None where it does not apply.

    None for LMs the user gave a `prompt_cache` of their own, custom engines (servers behind
    `api_base`, scripted LMs), LiteLLM routes (which refuse the setting) and other providers.
    """
    kind = _kind(lm)
    if kind is None:
        return None
    from dspy.lm15 import CacheConfig

    if kind == "marked":
        return CacheConfig(prefix="history")
    if kind == "keyed":
        return CacheConfig(key=run_key)
    return None


def cache_refused(lm: dspy.BaseLM) -> None:
    """DSPy refused a call on `lm` for its cache setting: its calls go without one from now on."""
    with _lock, contextlib.suppress(TypeError):  # an LM that cannot be weakly referenced is asked each time
        _decided[lm] = None


def _kind(lm: dspy.BaseLM) -> str | None:
    try:
        with _lock:
            if lm in _decided:
                return _decided[lm]
    except TypeError:  # an LM that cannot be weakly referenced: decide each time
        return _decide(lm)
    kind = _decide(lm)
    with _lock:
        _decided[lm] = kind
    return kind


def _decide(lm: dspy.BaseLM) -> str | None:
    import dspy

    if not isinstance(lm, dspy.LM) or lm.kwargs.get("prompt_cache") is not None:
        return None
    if not isinstance(lm._engine_spec, str) or lm.model_type not in ("chat", "responses"):
        return None
    provider = lm.model.split("/", 1)[0]
    if provider not in _MARKED + _KEYED or lm.kwargs.get("api_base") or lm.kwargs.get("base_url"):
        return None  # a gateway or proxy behind api_base may not take the provider's cache fields
    from dspy.clients.backend_selection import select_backend

    try:
        if not select_backend(lm).native:  # LiteLLM has no prompt_cache bridge: DSPy would refuse the call
            return None
    except Exception:  # routing is DSPy's to report, on the call itself
        return None
    return "marked" if provider in _MARKED else "keyed"


def llama_server_cache_args(cache_bytes: int = LLAMA_CACHE_BYTES) -> list[str]:
    """Command-line options for `python -m llama_cpp.server` that keep earlier prompts' KV state."""
    return ["--cache", "true", "--cache_type", "ram", "--cache_size", str(cache_bytes)]
