"""A local OpenAI-compatible chat-completions server on 127.0.0.1, for offline tests and benchmarks.

`responder(body) -> text` writes each answer; every request body is kept for assertions. Connections
are kept alive (HTTP/1.1), as providers keep them, so a benchmark measures the client, not TCP set-up.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class FakeOpenAIServer:
    """Chat-completions endpoint on 127.0.0.1; `responder(body) -> text` writes each answer."""

    responder: Callable[[dict[str, Any]], str]
    delay_s: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    unknown_models: set[str] = field(default_factory=set)
    # Prompts longer than this many characters get the 400 a server gives past its window.
    window_chars: int | None = None
    # `usage(body) -> dict` writes each answer's `usage` field (e.g. cached prompt tokens).
    usage: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    # The next requests get a 429 each, with these Retry-After values in turn (seconds or an HTTP
    # date; None sends no header); the requests after them are answered.
    rate_limited: list[str | None] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_port}/v1"

    def start(self) -> FakeOpenAIServer:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive; every reply carries its Content-Length
            disable_nagle_algorithm = True  # small replies on a kept connection must not wait ~40 ms

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append(body)
                if body.get("model") in fake.unknown_models:
                    message = f"The model `{body['model']}` does not exist"
                    self._reply(
                        404, {"error": {"message": message, "type": "invalid_request_error", "code": "model_not_found"}}
                    )
                    return
                prompt_chars = sum(len(str(m.get("content") or "")) for m in body.get("messages", []))
                if fake.window_chars is not None and prompt_chars > fake.window_chars:
                    message = (
                        f"This model's maximum context length is {fake.window_chars // 4} tokens. However, you "
                        f"requested {prompt_chars // 4} tokens. Please reduce the length of the messages."
                    )
                    error = {"message": message, "type": "invalid_request_error", "code": "context_length_exceeded"}
                    self._reply(400, {"error": error})
                    return
                if fake.rate_limited:
                    retry_after = fake.rate_limited.pop(0)
                    error = {"message": "Rate limit reached; try again later", "type": "rate_limit_error",
                             "code": "rate_limit_exceeded"}  # fmt: skip
                    self._reply(429, {"error": error}, {"Retry-After": retry_after} if retry_after else {})
                    return
                if fake.delay_s:
                    time.sleep(fake.delay_s)
                text = fake.responder(body)
                usage = (
                    fake.usage(body)
                    if fake.usage
                    else {"prompt_tokens": 50, "completion_tokens": 10, "total_tokens": 60}
                )
                self._reply(
                    200,
                    {
                        "id": "chatcmpl-test",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": body.get("model"),
                        "choices": [
                            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                        ],
                        "usage": usage,
                    },
                )

            def _reply(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                send_json(self, status, payload, headers)

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            # The default listen backlog of 5 drops bursts of connections (64 concurrent sub-calls),
            # which then wait a second for a SYN retry; providers do not behave like that.
            request_queue_size = 256

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def send_json(
    handler: BaseHTTPRequestHandler, status: int, payload: Any, headers: dict[str, str] | None = None
) -> None:
    """Answer `handler`'s request with `payload` as JSON (the stand-in providers of the tests use it too)."""
    data = json.dumps(payload).encode()
    handler.send_response(status)
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)
