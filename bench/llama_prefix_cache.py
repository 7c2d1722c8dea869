"""Does the root's prefix survive an interleaved call on the bundled llama.cpp server?

Starts llama-cpp-python's server on the bundled model twice, without and with the RAM state cache
(`rlm.models.prompt_cache.llama_server_cache_args`), and times three requests of one max token
each: the root's first step, a sub-call with another prompt, then the root's second step (the first
step's prompt plus a reply and its output). Without the cache the server holds only the latest
prompt, so the second step re-reads the ~1,000 instruction tokens; with it, the state saved after
the first step is restored. Needs the `[local]` extra and the assembled model (any `RLM(model="local")`
run assembles it). Run:  python -m bench.llama_prefix_cache [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.servers import wait_until_serving
from rlm.engine import prompts
from rlm.models.local import model_path
from rlm.models.prompt_cache import llama_server_cache_args

CONTEXT_TOKENS = 16384


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def post(base: str, messages: list[dict[str, str]]) -> float:
    body = json.dumps({"model": "m", "messages": messages, "max_tokens": 1, "temperature": 0}).encode()
    request = urllib.request.Request(f"{base}/chat/completions", body, {"Content-Type": "application/json"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=600) as response:
        response.read()
    return time.perf_counter() - started


def conversation() -> tuple[list[dict[str, str]], list[dict[str, str]], list[dict[str, str]]]:
    info = (
        f"`context` is a str of 120,000 characters.\n{prompts.sub_model_line(60_000, '')}\n\n{prompts.step_line(1, 20)}"
    )
    step1 = [
        {"role": "system", "content": prompts.INSTRUCTIONS},
        {"role": "user", "content": prompts.first_message("Which label is most common?", info)},
    ]
    output = "".join(f"record {i}: value={i * 7 % 13} label=L{i % 6}\n" for i in range(20))
    step2 = [
        *step1,
        {"role": "assistant", "content": "Let me look at the start.\n```python\nprint(context[:600])\n```"},
        {"role": "user", "content": prompts.observation(output, None, "", prompts.step_line(2, 20))},
    ]
    sub = [{"role": "user", "content": "Summarize these records in one line:\n" + output * 3}]
    return step1, sub, step2


def measure(gguf: Path, threads: int, cached: bool) -> dict[str, float]:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(gguf),
        "--port",
        str(port),
        "--n_ctx",
        str(CONTEXT_TOKENS),
        "--n_threads",
        str(threads),
        "--n_threads_batch",
        str(threads),
        *(llama_server_cache_args() if cached else []),
    ]
    base = f"http://127.0.0.1:{port}/v1"
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen(command, stdout=log, stderr=log)
        try:
            wait_until_serving(base)
            step1, sub, step2 = conversation()
            first = post(base, step1)
            interleaved = post(base, sub)
            second = post(base, step2)
            again = post(base, step2)  # the same prompt again: all of it is in the KV cache
        finally:
            server.terminate()
            server.wait(30)
    return {"step1_s": first, "subcall_s": interleaved, "step2_after_subcall_s": second, "step2_repeat_s": again}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2)))
    args = parser.parse_args(argv)
    gguf = model_path()  # assembled from the part packages on first use
    rows = {name: measure(gguf, args.threads, cached) for name, cached in (("no cache", False), ("RAM cache", True))}
    print(f"{'server':>10} {'step 1 s':>9} {'sub-call s':>11} {'step 2 after it s':>18} {'step 2 again s':>15}")
    for name, row in rows.items():
        print(
            f"{name:>10} {row['step1_s']:>9.2f} {row['subcall_s']:>11.2f} "
            f"{row['step2_after_subcall_s']:>18.2f} {row['step2_repeat_s']:>15.2f}"
        )
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
