"""How much of each root call's prompt repeats the previous call's prompt (provider prefix caching).

A scripted 10-step run with ~1,500-character outputs per step. Run:  python -m bench.prefix_share
"""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import itertools

from rlm import RLM
from rlm.testing import scripted_lm

STEPS = 10


def render(messages: list[dict[str, str]]) -> str:
    return "".join(f"<{m['role']}>{m['content']}" for m in messages)


def common_prefix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def main() -> None:
    replies = [
        f"Step {i}: look at part {i}.\n```python\nprint(context[{i * 1500}:{(i + 1) * 1500}])\n```"
        for i in range(STEPS)
    ]
    lm, engine = scripted_lm([*replies, "```python\nFINAL(context[:6])\n```"])
    context = "".join(f"record {i}: value={i * 7 % 13} label=L{i % 6}\n" for i in range(5000))
    RLM(model=lm, max_iterations=STEPS + 1).completion("Which label is most common?", context)
    prompts = [render(call) for call in engine.calls]
    print(f"{'call':>4} {'prompt chars':>13} {'previous prompt reused':>23} {'share of this prompt cached':>28}")
    shares = []
    for i in range(1, len(prompts)):
        shared = common_prefix(prompts[i - 1], prompts[i])
        reused = shared / len(prompts[i - 1])
        share = shared / len(prompts[i])
        shares.append(share)
        print(f"{i + 1:>4} {len(prompts[i]):>13,} {reused:>22.1%} {share:>27.1%}")
    print(f"mean share of each later prompt that repeats the previous prompt: {sum(shares) / len(shares):.1%}")
    print(
        f"share over the whole run (all later calls' chars): "
        f"{sum(common_prefix(a, b) for a, b in itertools.pairwise(prompts)) / sum(map(len, prompts[1:])):.1%}"
    )


if __name__ == "__main__":
    main()
