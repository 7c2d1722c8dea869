"""Compile the RLM's step with DSPy (BootstrapFewShot), save the program, and load it into an RLM.

python examples/optimize.py            (RLM_MODEL=local for the bundled model; `rlm optimize` is the same)

Training items are generated (needle, two documents, OOLONG-style records) with seeds and question
kinds disjoint from the held-out counting items the program is tried on; the trainer checks it.
A run becomes a demo only if its answer was right and founded on what its code found.
"""

from __future__ import annotations

import os

from common import exit_for_missing_key, model_settings

from rlm import RLM, APIKeyNotFoundError
from rlm.optimize import EVALUATION, optimize, training_items

if __name__ == "__main__":
    settings = model_settings()
    try:
        trainer = RLM(**settings, max_iterations=6)
    except APIKeyNotFoundError as exc:
        exit_for_missing_key(exc)
    program = optimize(
        trainer,
        training_items(4, size_tokens=4000),
        max_demos=2,
        on_item=lambda example, score, why: print(f"train {example.task} seed {example.seed}: {why}"),
    )
    os.makedirs("out", exist_ok=True)
    path = program.save("out/program.json")
    added = program.info["prompt_tokens_added"]
    print(f"{len(program.demos)} demos kept (~{added} prompt tokens each step); saved to {path}")

    (held_out,) = EVALUATION.items(1, 4000, "counting")
    rlm = RLM(**settings, max_iterations=6, program=path)
    print(rlm.completion(held_out.query, held_out.context), "(expected", held_out.answer + ")")
