"""Compile the RLM with a DSPy optimizer: BootstrapFewShot keeps the steps of runs that scored.

python examples/optimize.py
"""

from __future__ import annotations

import os
import random

import dspy
from common import exit_for_missing_key, model_settings

from rlm import RLM, APIKeyNotFoundError, RLMConfig, RLMModule


def example(seed: int) -> dspy.Example:
    rng = random.Random(seed)
    letters = "".join(rng.choice("abc") for _ in range(3000))
    letter = rng.choice("abc")
    return dspy.Example(query=f"How many times does '{letter}' occur?", context=letters,
                        answer=str(letters.count(letter))).with_inputs("query", "context")  # fmt: skip


if __name__ == "__main__":
    try:
        lm = RLM(**model_settings()).lm
    except APIKeyNotFoundError as exc:
        exit_for_missing_key(exc)
    trainset = [example(seed) for seed in range(4)]
    optimizer = dspy.BootstrapFewShot(
        metric=lambda ex, pred, trace=None: ex.answer == pred.answer.strip(), max_bootstrapped_demos=2
    )
    compiled = optimizer.compile(RLMModule(RLMConfig(max_iterations=6), lm=lm), trainset=trainset)
    os.makedirs("out", exist_ok=True)
    compiled.save("out/rlm_compiled.json")
    print(f"{len(compiled.step.demos)} demos kept; saved to out/rlm_compiled.json")
    test = example(99)
    print(compiled(query=test.query, context=test.context).answer, "(expected", test.answer + ")")
