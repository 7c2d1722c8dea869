"""OpenAI-compatible servers behind `api_base` (vLLM, llama.cpp, LM Studio, proxies) on DSPy's native engine.

`build_lm` gives these engines to `dspy.LM(engine=..., async_engine=...)`. DSPy's native client (lm15)
writes OpenAI's own `max_completion_tokens` for `openai/...`, which llama-cpp-python's server ignores;
DSPy's only way to send `max_tokens` instead (`extra_body`) sends every call through LiteLLM. So each
request is routed to a provider declared here, with the server's spelling, while the LM keeps the
user's model name for usage, history and errors. Each engine builds its own transport with the
proxy the environment names for the server read once, as httpx clients do: lm15 rereads every
proxy variable per request (~0.1 ms of CPU, a tenth of a sub-call's).
"""

from __future__ import annotations

import asyncio
import importlib
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit
from urllib.request import getproxies, proxy_bypass

from dspy.clients.engines.lm15_engine import AsyncLM15Engine, LM15Engine, timeouts_for
from dspy.lm15 import (
    AccessPolicy,
    EndpointSupport,
    OpenAIChatCompat,
    ProviderDefinition,
    Request,
    Response,
    RouterConfig,
)

# lm15's own transports, which `dspy.lm15` does not re-export (DSPy is pinned below 3.5). Imported by
# name: a `from dspy._vendor...` line makes mypy read `dspy` as a bare namespace package.
_transports = importlib.import_module("dspy._vendor.lm15.transports")
StdlibTransport, StdlibAsyncTransport = _transports.StdlibTransport, _transports.StdlibAsyncTransport

# Declared only inside these engines' router configs, never registered process-wide.
PROVIDER_ID = "rlm-openai-server"
# Placeholder for servers that need no key; the wire still carries a bearer header.
NO_KEY = "sk-no-key-required"


def _definition(api_base: str, max_tokens_field: str) -> ProviderDefinition:
    access = AccessPolicy(
        provider=PROVIDER_ID,
        supports=EndpointSupport(complete=True, stream=True, models=True),
        auth_modes=("bearer",),
        base_url=api_base,
    )
    compat = OpenAIChatCompat(
        instruction_role="system",
        max_tokens_field=max_tokens_field,
        stream_usage="include",
        thinking_format="reasoning_effort",
        tool_result_name="omit",
        strict_tools="omit",
        cache_control="none",
    )
    return ProviderDefinition.chat(access, compat=compat, placeholder_key=NO_KEY, note="OpenAI-compatible server")


def environment_proxy(url: str) -> str | None:
    """The proxy HTTP_PROXY / HTTPS_PROXY / ALL_PROXY name for `url`, unless NO_PROXY exempts it (lm15's rule)."""
    parts = urlsplit(url)
    proxies = getproxies()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy:
        return None
    try:
        if proxy_bypass(parts.hostname or ""):
            return None
    except Exception:  # platform lookup quirks bypass nothing, as in lm15
        pass
    return proxy


class _Routing:
    """What the sync and async engines share: the router config and the model-name rewrite."""

    def __init__(
        self,
        api_base: str,
        api_key: str | None,
        timeout: float | None,
        max_tokens_field: str = "max_tokens",
        before_request: Callable[[], None] | None = None,
    ) -> None:
        self.api_base, self.timeout, self.max_tokens_field = api_base, timeout, max_tokens_field
        self.api_key = api_key  # named for redaction (tracking/redact.py): the LM's kwargs no longer hold it
        # Called before each request; raises to refuse it (the bundled server's listener check).
        self.before_request = before_request
        timeouts = RouterConfig(timeouts=timeouts_for(timeout)).transport_kwargs()
        self._transport_kwargs = {**timeouts, "proxy": environment_proxy(api_base), "trust_env": False}
        self._router = {
            "api_keys": {PROVIDER_ID: api_key or os.environ.get("OPENAI_API_KEY") or NO_KEY},
            "base_urls": {PROVIDER_ID: api_base},
            "providers": (_definition(api_base, max_tokens_field),),
        }
        self._open()

    def _open(self) -> None:
        """Each engine's own connection state, built from the shared router config above."""

    def _check(self) -> None:
        if self.before_request is not None:
            self.before_request()

    @staticmethod
    def routed(request: Request) -> Request:
        _, _, name = request.model.partition("/")
        return replace(request, model=f"{PROVIDER_ID}/{name or request.model}")

    # A saved program records where the server was, never the key (read again from the environment).
    def dump_state(self) -> dict[str, Any]:
        return {"api_base": self.api_base, "timeout": self.timeout, "max_tokens_field": self.max_tokens_field}

    @classmethod
    def load_state(cls, state: dict[str, Any]) -> Any:
        return cls(state["api_base"], None, state.get("timeout"), state.get("max_tokens_field", "max_tokens"))


class ServerEngine(_Routing):
    """Synchronous engine: one lm15 engine (one connection pool) shared by every thread."""

    def _open(self) -> None:
        self._transport = StdlibTransport(**self._transport_kwargs)
        self._engine = LM15Engine(RouterConfig(**self._router, transport=self._transport))

    def complete(self, request: Request) -> Response:
        self._check()
        return self._engine.complete(self.routed(request))

    def stream(self, request: Request) -> Iterator[Any]:
        self._check()
        yield from self._engine.stream(self.routed(request))

    def close(self) -> None:
        self._engine.close()
        self._transport.close()  # a transport given to lm15 stays ours to close


class AsyncServerEngine(_Routing):
    """Async engine: lm15's async pools belong to one event loop, so one engine per live loop."""

    def _open(self) -> None:
        self._engines: dict[asyncio.AbstractEventLoop, AsyncLM15Engine] = {}
        self._lock = threading.Lock()

    def _engine(self) -> AsyncLM15Engine:
        loop = asyncio.get_running_loop()
        with self._lock:
            engine = self._engines.get(loop)
            if engine is None:
                # Pools of finished loops cannot be closed from here; dropping them lets lm15's
                # finalizers close their sockets (as dspy.LM does for its own pools).
                for dead in [known for known in self._engines if known.is_closed()]:
                    del self._engines[dead]
                transport = StdlibAsyncTransport(**self._transport_kwargs)
                engine = self._engines[loop] = AsyncLM15Engine(RouterConfig(**self._router, transport=transport))
            return engine

    async def complete(self, request: Request) -> Response:
        self._check()
        return await self._engine().complete(self.routed(request))

    async def stream(self, request: Request) -> AsyncIterator[Any]:
        self._check()
        async for event in self._engine().stream(self.routed(request)):
            yield event
