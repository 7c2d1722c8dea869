"""Stand-in OpenAI-compatible providers on 127.0.0.1 for what FakeOpenAIServer does not do: refusals
that quote the key a request was sent with (a 400, 401 or 429 and its headers), and records of each
request's Authorization (attack rounds 18 and 19)."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from rlm import RLM
from rlm.testing.openai_server import send_json

SUB_CALL = "SUBCALL-TRIGGER"  # the prompt of the sub-call a refusing provider refuses


def chat_completion(text: str) -> dict[str, Any]:
    """A chat-completions reply whose one message is `text`."""
    choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
    usage = {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}
    return {"object": "chat.completion", "choices": [choice], "usage": usage}


class JSONHandler(BaseHTTPRequestHandler):
    """A quiet keep-alive handler that reads and answers JSON."""

    protocol_version = "HTTP/1.1"

    def read_json(self) -> Any:
        return json.loads(self.rfile.read(int(self.headers["Content-Length"])))

    def sent_key(self) -> str:
        """The key the request was sent with (its Authorization's last word)."""
        return self.headers.get("Authorization", "").split()[-1]

    def send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        send_json(self, status, payload, headers)

    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """`handler` served on 127.0.0.1 for the block; the block gets its API base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/v1"
    finally:
        server.shutdown()
        server.server_close()


def refusing_sub_calls(
    root_code: str, status: int, message: str, code: str, headers: dict[str, str] | None = None
) -> type[JSONHandler]:
    """A provider whose root model replies with `root_code` to run, and which refuses the sub-call
    (prompt SUB_CALL) with `status` and `headers`, its error `message` quoting the request's key in
    place of "{key}"."""

    class Provider(JSONHandler):
        def do_POST(self) -> None:
            body = self.read_json()
            if body["messages"][-1]["content"] == SUB_CALL:
                error = {"message": message.format(key=self.sent_key()), "code": code}
                self.send_json(status, {"error": error}, headers)
            else:
                self.send_json(200, chat_completion(f"Running.\n```python\n{root_code}\n```"))

    return Provider


def keyed_rlm(api_base: str, key: str, history: Path, **settings: Any) -> RLM:
    """An RLM of "openai/test-model" at `api_base` sent `key`, its history written to `history`, and
    waiting at most 1 s before a retry."""
    return RLM(
        "openai/test-model",
        api_key=key,
        api_base=api_base,
        enable_history=True,
        history_output_path=history,
        max_retry_wait_s=1,
        **settings,
    )


class RefusesTheKey(JSONHandler):
    """A provider that answers every request 401, quoting the key it was sent."""

    def do_POST(self) -> None:
        self.read_json()
        error = {"message": f"Incorrect API key provided: {self.sent_key()}", "code": "invalid_api_key"}
        self.send_json(401, {"error": error})
