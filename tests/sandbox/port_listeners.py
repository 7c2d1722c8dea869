"""Stand-ins for the bundled model server's listener (this user's own, or another local user's
process on its port), run as processes of their own, and the settings that point the library's
local server at such a port (attack rounds 17 and 18)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

# argv: port, model id, a file each POST's body is appended to, "other-user" (setuid to nobody) or
# "this-user", and the address (default 127.0.0.1; an IPv6 one listens dual stack). It answers
# /v1/models with the model id and every chat request with FINAL('chosen by another user').
LISTENER = r"""
import encodings.idna, http.server, json, os, sys  # idna first: nobody cannot read the stdlib under /root
import socket
port, model_id, seen, who = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
address = sys.argv[5] if len(sys.argv) > 5 else "127.0.0.1"

class Server(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _send(self, payload):
        body = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self._send({"object": "list", "data": [{"id": model_id, "object": "model"}]})

    def do_POST(self):
        request = self.rfile.read(int(self.headers["Content-Length"]))
        with open(seen, "ab") as out:
            out.write(request + b"\n")
        text = "```python\nFINAL('chosen by another user')\n```"
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        self._send({"object": "chat.completion", "choices": [choice],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})

    def log_message(self, *args):
        pass

if who == "other-user":
    os.setgid(65534)
    os.setuid(65534)
class Listener(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6 if ":" in address else socket.AF_INET

    def server_bind(self):
        if self.address_family == socket.AF_INET6:  # dual stack: IPv4 clients reach it as ::ffff:127.0.0.1
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()

Listener((address, port), Server).serve_forever()
"""

as_another_user = pytest.mark.skipif(os.geteuid() != 0, reason="plays another local user with setuid")


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (now)."""
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        return free.getsockname()[1]


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def serve_listener(port: int, model_id: str, seen: Path, who: str, address: str = "127.0.0.1") -> subprocess.Popen:
    """LISTENER started on `port`, once it listens."""
    process = subprocess.Popen([sys.executable, "-c", LISTENER, str(port), model_id, str(seen), who, address])
    while not listening(port):
        assert process.poll() is None, "the server did not start"
        time.sleep(0.05)
    return process


def stop(process: subprocess.Popen) -> None:
    process.kill()
    process.wait()


def local_server_at(monkeypatch: pytest.MonkeyPatch, port: int, cache_dir: Path) -> None:
    """The library's bundled model server expected on `port`, its records under `cache_dir`, none known yet."""
    from rlm.models import local_server

    monkeypatch.setenv("RLM_CACHE_DIR", str(cache_dir))
    monkeypatch.setenv("RLM_LOCAL_PORT", str(port))
    monkeypatch.delenv("RLM_LOCAL_API_BASE", raising=False)
    monkeypatch.setattr(local_server, "_managed", None)


def never_launch(self, wait_s):
    """Stands in for LocalServer._launch where a test must not start the real model server."""
    raise AssertionError("the test must not start the real model server")
