"""Tokens sent to the root model in step 1 for contexts of 10k, 1M and 10M tokens.

The design promises the root prompt does not grow with the context. Run:
    python -m bench.root_prompt_tokens
"""

from __future__ import annotations

import os
import resource
import time

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from rlm import RLM
from rlm.testing import scripted_lm

SIZES_IN_TOKENS = (10_000, 1_000_000, 10_000_000)
LINE = "2024-03-01 12:00:00 INFO service=api user=4711 path=/v1/items status=200 ms=12\n"


def make_context(tokens: int) -> str:
    chars = tokens * 4  # the engine's own estimate; the exact ratio does not matter here
    return (LINE * (chars // len(LINE) + 1))[:chars]


def count_tokens(messages: list[dict[str, str]]) -> int:
    import litellm

    return int(litellm.token_counter(model="gpt-4o-mini", messages=messages))


def main() -> None:
    rows = []
    for size in SIZES_IN_TOKENS:
        context = make_context(size)
        lm, engine = scripted_lm(["```python\nFINAL(str(len(context)))\n```"])
        started = time.perf_counter()
        RLM(model=lm).completion("How many requests returned status 500?", context)
        elapsed = time.perf_counter() - started
        messages = engine.calls[0]
        rows.append((size, len(context), count_tokens(messages), sum(len(m["content"]) for m in messages), elapsed))
        del context
    base = rows[0][2]
    print(
        f"{'context tokens':>15} {'context chars':>14} {'step-1 tokens':>14} {'prompt chars':>13} {'vs 10k':>8} {'run s':>7}"
    )
    for size, chars, tokens, prompt_chars, elapsed in rows:
        print(
            f"{size:>15,} {chars:>14,} {tokens:>14,} {prompt_chars:>13,} {100 * (tokens - base) / base:>+7.2f}% {elapsed:>7.2f}"
        )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"host peak RSS: {peak_mb:.0f} MB (the sandbox worker holds its own copy)")


if __name__ == "__main__":
    main()
