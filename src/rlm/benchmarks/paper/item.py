"""`PaperItem`: one generated question of the paper suite, with its gold answer and how it is scored.

Built by the generators in this package (seeded, offline); scored by `scoring.py`. `score` returns
a float in [0, 1] (partial credit for near counts and for partly right pair lists).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rlm.benchmarks.paper import scoring

CHARS_PER_TOKEN = 4  # the engine's own estimate, as in tasks.py


@dataclass(frozen=True)
class PaperItem:
    benchmark: str  # "sniah", "oolong", "oolong_pairs" or "codeqa"
    kind: str  # the question shape, for per-shape results
    query: str
    context: Any  # str, or dict of documents (CodeQA: path -> source)
    answer: str  # the gold answer as text (pairs: one "(a, b)" per line)
    scoring: str  # "numeric", "exact_number", "choice" or "pairs"
    size_tokens: int
    seed: int
    candidates: tuple[str, ...] = ()  # for "choice": every answer a reader could name
    meta: dict[str, Any] = field(default_factory=dict)

    def score(self, prediction: str) -> float:
        text = str(prediction or "")
        if self.scoring == "numeric":
            return scoring.numeric_score(text, int(self.answer))
        if self.scoring == "exact_number":
            return scoring.exact_number_score(text, int(self.answer))
        if self.scoring == "choice":
            return scoring.choice_score(text, self.answer, self.candidates)
        if self.scoring == "pairs":
            return scoring.pairs_f1(text, scoring.parse_pairs(self.answer))
        raise ValueError(f"unknown scoring {self.scoring!r}: use numeric, exact_number, choice or pairs")

    @property
    def needs_meaning(self) -> bool:
        """Whether the answer rests on judgments code alone cannot make (OOLONG's unlabelled categories)."""
        return self.benchmark in ("oolong", "oolong_pairs")

    def context_chars(self) -> int:
        if isinstance(self.context, str):
            return len(self.context)
        return sum(len(str(k)) + len(str(v)) for k, v in dict(self.context).items())
