"""End to end at scale: a scripted RLM run over a 10M-token (40 MB) and a 100 MB context.

The model is scripted (no provider is reachable here), everything else is real: the facade, the
engine, the restricted sandbox worker, a recursive child node on a 4 MB slice, batched sub-calls.
Each size runs in its own process so that peak memory is measured per size. Run:
    python -m bench.scale
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

SIZES_MB = (40, 100)  # 40 MB is 10M tokens at 4 characters per token
LINE = "2024-03-01 12:00:00 INFO service=api user=4711 path=/v1/items status=200 ms=12\n"
FAILED = "2024-03-01 12:00:00 INFO service=api user=4711 path=/v1/pay status=500 ms=97\n"
EVERY = 10_007  # one failed request per this many lines


def make_context(megabytes: int) -> tuple[str, int]:
    lines = megabytes * 1_000_000 // len(LINE)
    block = LINE * (EVERY - 1) + FAILED
    text = block * (lines // EVERY) + LINE * (lines % EVERY)
    return text, lines // EVERY


ROOT_STEPS = [
    "Look first.\n```python\nprint(len(context))\nprint(context[:300])\n```",
    "Count failed requests with code.\n```python\n"
    "failed = sum(1 for line in context.splitlines() if 'status=500' in line)\nprint(failed)\n```",
    "Ask sub-models about a few samples, concurrently.\n```python\n"
    "samples = [context[i:i + 2000] for i in range(0, 8000, 2000)]\n"
    "notes = llm_query_batched(['Which paths appear here? ' + s for s in samples])\nprint(notes)\n```",
    "Check the first 4 MB with a child RLM.\n```python\n"
    "head = recursive_llm('How many failed requests are there?', context[:4_000_000])\nprint(head)\n```",
    "```python\nFINAL(str(failed))\n```",
]
CHILD_STEPS = [
    "```python\nprint(len(context))\n```",
    "```python\nFINAL(str(context.count('status=500')))\n```",
]


def reply(messages: list[dict[str, str]]) -> str:
    """Root and child steps by how many replies the conversation already holds; sub-calls get a note."""
    system = messages[0]["content"] if messages[0]["role"] == "system" else ""
    if "Python REPL" not in system:
        return "paths: /v1/items"
    done = sum(m["role"] == "assistant" for m in messages)
    child = "failed requests are there?" in messages[1]["content"]
    return (CHILD_STEPS if child else ROOT_STEPS)[done]


def count_tokens(messages: list[dict[str, str]]) -> int:
    import litellm

    return int(litellm.token_counter(model="gpt-4o-mini", messages=messages))


def one(megabytes: int) -> dict[str, float | int | str]:
    from rlm import RLM
    from rlm.testing import scripted_lm

    context, expected = make_context(megabytes)
    before_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    lm, engine = scripted_lm(reply)
    started = time.perf_counter()
    result = RLM(model=lm, max_depth=2, memory_limit_mb=2048).run("How many requests failed (status 500)?", context)
    wall = time.perf_counter() - started
    tokens = [count_tokens(call) for call in engine.calls]
    roots = [t for t, call in zip(tokens, engine.calls, strict=True) if "Python REPL" in call[0]["content"]]
    return {
        "context MB": round(len(context) / 1e6, 1),
        "context tokens (chars/4)": len(context) // 4,
        "answer right": str(result.answer == str(expected)),
        "LM calls": len(engine.calls),
        "wall s": round(wall, 2),
        "max tokens per call": max(tokens),
        "first root call tokens": roots[0],
        "last root call tokens": roots[-1],
        "host peak MB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "host before run MB": round(before_mb),
        # sandbox workers have exited and been waited for: their largest peak is the children's maxrss
        "largest worker peak MB": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024),
    }


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--one":
        print(json.dumps(one(int(sys.argv[2]))))
        return
    rows = []
    for megabytes in SIZES_MB:
        done = subprocess.run([sys.executable, "-m", "bench.scale", "--one", str(megabytes)],
                              capture_output=True, text=True, check=True)  # fmt: skip
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    for key in rows[0]:
        print(f"{key:>26} " + " ".join(f"{row[key]!s:>12}" for row in rows))


if __name__ == "__main__":
    main()
