"""The bundled server's memory as distinct prompts pass through its RAM prompt cache.

    python -m bench.llama_server_memory --launcher stock --prompts 12
    python -m bench.llama_server_memory --launcher bounded --prompts 12

Starts the bundled model's server on a spare port with the library's own arguments (1 GiB cache),
either as `python -m llama_cpp.server` (stock: the cache counts only llama.cpp's state bytes) or
through `rlm.models.llama_server_main` (bounded: each state's logits copy is counted too), sends
distinct prompts of `--words` words (100: ~700 tokens, past the 512-token logits buffer) with one
output token each, and prints the server's RSS after each and its peak so far. `--logits-all`
overrides the launcher's --logits_all (the library passes false; llama-cpp-python's default is true).
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


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """Resident memory now (VmRSS), or its peak so far (VmHWM), in MB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
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
    parser.add_argument("--words", type=int, default=100, help="words per prompt (~7 tokens each)")
    parser.add_argument(
        "--logits-all",
        choices=("default", "true", "false"),
        default="default",
        help="the server's --logits_all (default: the launcher's own choice)",
    )
    args = parser.parse_args()
    command = LocalServer(port=args.port).command(model_path())
    if args.launcher == "stock":
        command[1:3] = ["-m", "llama_cpp.server"]
    if args.logits_all != "default":
        command += ["--logits_all", args.logits_all]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_serving(f"http://127.0.0.1:{args.port}/v1")
        print(
            f"launcher {args.launcher}, logits_all {args.logits_all}, {args.words} words a prompt: "
            f"RSS at start {rss_mb(server.pid):,.0f} MB",
            flush=True,
        )
        for i in range(args.prompts):
            words = " ".join(f"item{i}-{j}" for j in range(args.words))  # distinct from the first token on
            started = time.perf_counter()
            ask(args.port, f"Prompt {i}: {words}")
            print(
                f"after prompt {i + 1:2d}: RSS {rss_mb(server.pid):,.0f} MB, peak {rss_mb(server.pid, 'VmHWM'):,.0f} MB "
                f"({time.perf_counter() - started:.1f} s)",
                flush=True,
            )
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    sys.exit(main())
