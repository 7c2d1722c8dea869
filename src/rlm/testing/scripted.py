"""A scripted LM for offline tests: a real `dspy.LM` whose engine returns replies you wrote.

Used by this project's tests and benchmarks; handy for testing your own RLM programs offline.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dspy
from dspy.lm15 import Message, Response, TextPart, Usage

Reply = str | Callable[[list[dict[str, str]]], str]


def request_messages(request: Any) -> list[dict[str, str]]:
    messages = []
    if request.system is not None:
        system = request.system if isinstance(request.system, str) else "".join(p.text for p in request.system)
        messages.append({"role": "system", "content": system})
    messages.extend({"role": m.role, "content": m.text or ""} for m in request.messages)
    return messages


@dataclass
class ScriptedEngine:
    """Answers each request with the next scripted reply (a string, or a function of the messages)."""

    replies: list[Reply] | Callable[[list[dict[str, str]]], str]
    delay_s: float = 0.0
    prompt_tokens: int = 100
    completion_tokens: int = 20
    calls: list[list[dict[str, str]]] = field(default_factory=list)
    stops: list[tuple[str, ...]] = field(default_factory=list)  # each request's stop sequences
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def reply_for(self, messages: list[dict[str, str]]) -> str:
        with self._lock:
            self.calls.append(messages)
            if callable(self.replies):
                script: Reply = self.replies
            elif self.replies:
                script = self.replies.pop(0)
            else:
                raise AssertionError("the scripted LM ran out of replies")
        return script(messages) if callable(script) else script

    def _response(self, text: str) -> Response:
        usage = Usage(
            input_tokens=self.prompt_tokens,
            output_tokens=self.completion_tokens,
            total_tokens=self.prompt_tokens + self.completion_tokens,
        )
        return Response(
            id=None, model="scripted", message=Message.assistant([TextPart(text)]), finish_reason="stop", usage=usage
        )

    def complete(self, request: Any) -> Response:
        self.stops.append(tuple(request.config.stop))
        text = self.reply_for(request_messages(request))
        if self.delay_s:
            time.sleep(self.delay_s)
        return self._response(text)

    def stream(self, request: Any) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        pass


@dataclass
class AsyncScriptedEngine:
    sync: ScriptedEngine

    async def complete(self, request: Any) -> Response:
        self.sync.stops.append(tuple(request.config.stop))
        text = self.sync.reply_for(request_messages(request))
        if self.sync.delay_s:
            await asyncio.sleep(self.sync.delay_s)
        return self.sync._response(text)

    async def stream(self, request: Any) -> Any:
        raise NotImplementedError

    async def aclose(self) -> None:
        pass


def scripted_lm(replies: Any, model: str = "scripted/root", **engine_kwargs: Any) -> tuple[dspy.LM, ScriptedEngine]:
    engine = ScriptedEngine(replies, **engine_kwargs)
    lm = dspy.LM(model, engine=engine, async_engine=AsyncScriptedEngine(engine), cache=False, num_retries=0)
    return lm, engine
