"""Stand-in for `python -m llama_cpp.server`: same arguments, same /v1/models answer, scripted replies.

Like llama.cpp's server, it answers one request at a time: /v1/models waits while a completion runs.
FAKE_LLAMA_DELAY (seconds per completion), FAKE_LLAMA_NOISE (bytes written to the log at start) and
FAKE_LLAMA_ARGV (a file that receives the command line) and FAKE_LLAMA_GATE (a file whose creation
ends each completion's wait) steer it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

parser = argparse.ArgumentParser()
parser.add_argument("--model")
parser.add_argument("--model_alias")
parser.add_argument("--host")
parser.add_argument("--port", type=int)
args, _ = parser.parse_known_args()
if os.environ.get("FAKE_LLAMA_ARGV"):
    with open(os.environ["FAKE_LLAMA_ARGV"], "a") as record:
        record.write(json.dumps({"pid": os.getpid(), "argv": sys.argv[1:]}) + "\n")
noise = int(os.environ.get("FAKE_LLAMA_NOISE", "0"))
while noise > 0:
    sys.stdout.write("x" * min(noise, 999) + "\n")
    noise -= 1000
sys.stdout.flush()
busy = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        with busy:
            self._reply({"object": "list", "data": [{"id": args.model_alias, "object": "model"}]})

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        with busy:
            time.sleep(float(os.environ.get("FAKE_LLAMA_DELAY", "0")))
            gate = os.environ.get("FAKE_LLAMA_GATE")  # busy until the test creates this file (at most 120 s)
            deadline = time.monotonic() + 120
            while gate and not os.path.exists(gate) and time.monotonic() < deadline:
                time.sleep(0.05)
            message = {"role": "assistant", "content": "```python\nFINAL(str(len(context)))\n```"}
            usage = {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}
            self._reply(
                {
                    "id": "x",
                    "object": "chat.completion",
                    "created": 0,
                    "model": args.model_alias,
                    "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                    "usage": usage,
                }
            )

    def _reply(self, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_: object) -> None:
        pass


server = ThreadingHTTPServer((args.host, args.port), Handler)
server.daemon_threads = True
# the line uvicorn prints once llama-cpp-python's server listens (the guard reads it)
print(f"stand-in serving {args.model_alias}; Uvicorn running on http://{args.host}:{args.port}", flush=True)
server.serve_forever()
