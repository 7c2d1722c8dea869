"""Shared fixtures: a scripted LM for the real engine, and a local OpenAI-compatible server.

No test reaches the network: the scripted LM is a real `dspy.LM` whose engine returns replies a
test wrote, and the HTTP server listens on 127.0.0.1 for the real dspy -> HTTP path.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import dspy
import pytest
from dspy.lm15 import Message, Response, TextPart, Usage

# Price tables ship with the packages; never try to refresh them from the network in tests.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

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
        return Response(id=None, model="scripted", message=Message.assistant([TextPart(text)]),
                        finish_reason="stop", usage=usage)  # fmt: skip

    def complete(self, request: Any) -> Response:
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


@pytest.fixture
def make_lm() -> Callable[..., tuple[dspy.LM, ScriptedEngine]]:
    return scripted_lm


# --- a local OpenAI-compatible server ----------------------------------------------------------------


@dataclass
class FakeOpenAIServer:
    """Chat-completions endpoint on 127.0.0.1; `responder(body) -> text` writes each answer."""

    responder: Callable[[dict[str, Any]], str]
    delay_s: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    unknown_models: set[str] = field(default_factory=set)
    server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_port}/v1"

    def start(self) -> FakeOpenAIServer:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append(body)
                if body.get("model") in fake.unknown_models:
                    message = f"The model `{body['model']}` does not exist"
                    self._reply(404, {"error": {"message": message, "type": "invalid_request_error",
                                                "code": "model_not_found"}})  # fmt: skip
                    return
                if fake.delay_s:
                    time.sleep(fake.delay_s)
                text = fake.responder(body)
                self._reply(200, {
                    "id": "chatcmpl-test", "object": "chat.completion", "created": int(time.time()),
                    "model": body.get("model"),
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                 "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 50, "completion_tokens": 10, "total_tokens": 60},
                })  # fmt: skip

            def _reply(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def openai_server() -> Iterator[Callable[..., FakeOpenAIServer]]:
    servers: list[FakeOpenAIServer] = []

    def start(responder: Callable[[dict[str, Any]], str], **kwargs: Any) -> FakeOpenAIServer:
        server = FakeOpenAIServer(responder, **kwargs).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def last_user_message(messages: list[dict[str, str]]) -> str:
    return next(m["content"] for m in reversed(messages) if m["role"] == "user")
