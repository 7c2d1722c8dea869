"""Ask one question of a long document.

Needs a model: by default gpt-4o-mini with OPENAI_API_KEY set (in the environment or ./.env), or
RLM_MODEL=local for the bundled model (no key).
Any other model: RLM_MODEL=anthropic/claude-sonnet-4-20250514, or an OpenAI-compatible server with
RLM_MODEL=openai/<name> RLM_API_BASE=http://127.0.0.1:8080/v1.
"""

from __future__ import annotations

import os
import random
import sys

from common import exit_for_missing_key

from rlm import RLM, APIKeyNotFoundError


def make_document(seed: int = 7, lines: int = 20_000) -> tuple[str, int]:
    """A long log with one line that holds the answer."""
    rng = random.Random(seed)
    secret = rng.randint(1000, 9999)
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]
    body = [f"{i:06d} INFO worker-{rng.randint(1, 9)} {' '.join(rng.choices(words, k=8))}" for i in range(lines)]
    body.insert(rng.randint(0, lines), f"{lines // 2:06d} WARN vault the access code is {secret}")
    return "\n".join(body), secret


def main() -> int:
    document, secret = make_document()
    model = os.environ.get("RLM_MODEL", "gpt-4o-mini")
    try:
        rlm = RLM(model=model, api_base=os.environ.get("RLM_API_BASE"), max_iterations=10)
    except APIKeyNotFoundError as exc:
        exit_for_missing_key(exc)  # suggests RLM_MODEL=local, as the other examples do
    result = rlm.run("What is the access code in the WARN line?", document)
    print(f"answer: {result.answer}  (expected {secret})")
    print(
        f"{result.iterations} steps, {result.llm_calls} LM calls, "
        f"{result.prompt_tokens}+{result.completion_tokens} tokens, finish: {result.finish_reason}, "
        f"{result.wall_time_s:.1f} s, document of {len(document):,} characters"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
