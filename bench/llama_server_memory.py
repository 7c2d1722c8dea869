"""The bundled server's memory as distinct prompts pass through its RAM prompt cache.

    python -m bench.llama_server_memory --launcher stock --prompts 12
    python -m bench.llama_server_memory --launcher bounded --prompts 12

Starts the bundled model's server on a spare port with the library's own arguments (1 GiB cache),
either as `python -m llama_cpp.server` (stock: the cache counts only llama.cpp's state bytes) or
through `rlm.models.llama_server_main` (bounded: each state's logits copy is counted too), sends
distinct ~700-token prompts (past the 512-token logits buffer) with one output token each, and prints the server's RSS after each.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import urllib.request

from bench.servers import wait_until_serving
from rlm.models.local import model_path
from rlm.models.local_server import LocalServer


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def ask(port: int, prompt: str) -> None:
    body = json.dumps({"prompt": prompt, "max_tokens": 1, "temperature": 0}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/completions", body, {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=600) as reply:
        reply.read()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--launcher", choices=("stock", "bounded"), required=True)
    parser.add_argument("--prompts", type=int, default=12)
    parser.add_argument("--port", type=int, default=8097)
    args = parser.parse_args()
    command = LocalServer(port=args.port).command(model_path())
    if args.launcher == "stock":
        command[1:3] = ["-m", "llama_cpp.server"]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_serving(f"http://127.0.0.1:{args.port}/v1")
        print(f"launcher {args.launcher}: RSS at start {rss_mb(server.pid):,.0f} MB", flush=True)
        for i in range(args.prompts):
            words = " ".join(f"item{i}-{j}" for j in range(100))  # distinct from the first token on
            started = time.perf_counter()
            ask(args.port, f"Prompt {i}: {words}")
            print(
                f"after prompt {i + 1:2d}: RSS {rss_mb(server.pid):,.0f} MB ({time.perf_counter() - started:.1f} s)",
                flush=True,
            )
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    sys.exit(main())
