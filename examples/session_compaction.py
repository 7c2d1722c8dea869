"""Many questions over one log in a session: the REPL and the conversation carry over, and the
conversation is compacted into the model's own summary when it grows past `compact_at_tokens`.

python examples/session_compaction.py
"""

from __future__ import annotations

import random

from common import exit_for_missing_key, model_settings

from rlm import RLM, APIKeyNotFoundError


def make_log(seed: int = 3, lines: int = 5000) -> str:
    rng = random.Random(seed)
    services = ["api", "auth", "billing", "search"]
    levels = ["INFO"] * 8 + ["WARN", "ERROR"]
    return "\n".join(
        f"2026-03-01 12:{i // 60 % 60:02d}:{i % 60:02d} {rng.choice(levels)} service={rng.choice(services)} "
        f"ms={rng.randint(5, 900)}"
        for i in range(lines)
    )


if __name__ == "__main__":
    try:
        rlm = RLM(**model_settings(), max_iterations=8)
    except APIKeyNotFoundError as exc:
        exit_for_missing_key(exc)
    questions = [
        "How many ERROR lines are there?",
        "Which service has the most of those errors?",
        "What is the slowest request (largest ms) of that service?",
    ]
    # A low limit so that even this short session compacts; by default it is 60% of the model's window.
    with rlm.session(make_log(), compact_at_tokens=2_000) as session:
        for question in questions:
            result = session.run(question)
            print(f"{question} -> {result.answer}  ({result.iterations} steps, {result.llm_calls} LM calls)")
        for compaction in session.compactions:
            print(
                f"compacted during question {compaction.question}, before step {compaction.step}: "
                f"~{compaction.tokens_before:,} -> ~{compaction.tokens_after:,} tokens"
            )
