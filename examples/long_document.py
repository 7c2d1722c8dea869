"""A 50k+-token document: a generated annual report with one fact worth finding.

python examples/long_document.py
"""

from __future__ import annotations

import random

from common import exit_for_missing_key, model_settings

from rlm import RLM, APIKeyNotFoundError


def report(seed: int = 5) -> str:
    rng = random.Random(seed)
    regions = ["North", "South", "East", "West", "Central"]
    paragraphs = [
        f"In week {week} the {rng.choice(regions)} region shipped {rng.randint(100, 999)} units; "
        f"returns stayed near {rng.randint(1, 5)} percent and the service desk closed {rng.randint(20, 90)} tickets."
        for week in range(1, 1500)
    ]
    paragraphs.insert(900, "The board approved the new warehouse in Tampere on 14 March.")
    return "\n\n".join(paragraphs)


if __name__ == "__main__":
    text = report()
    try:
        rlm = RLM(**model_settings(), max_iterations=10)
    except APIKeyNotFoundError as exc:
        exit_for_missing_key(exc)
    result = rlm.run("In which city did the board approve a new warehouse?", text)
    print(f"{result.answer}\n({len(text) // 4:,} tokens of context; {result.llm_calls} LM calls)")
