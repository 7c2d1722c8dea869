"""The optimizer's metric: a run counts only when its answer is right *and* founded on an output.

A demo from a lucky guess would teach guessing, so the run must match the item's answer (the
benchmarks' scoring) and end with a FINAL the engine accepted: the node's founded-answer check
(`engine/grounding.py`) refuses a typed value no output showed, so `finish_reason == "final"`
already means founded. Used by `rlm.optimize.compile` (BootstrapFewShot's metric, GEPA's score).
"""

from __future__ import annotations

from typing import Any

import dspy

from rlm.benchmarks.tasks import Item
from rlm.engine.result import RLMResult


def judge(example: dspy.Example, prediction: Any) -> tuple[float, str]:
    """The score (1.0 or 0.0) of one run, and why, in words an optimizer can reflect on."""
    result: RLMResult | None = getattr(prediction, "result", None)
    answer = str(getattr(prediction, "answer", "") or "")
    item = Item(example.get("task", ""), example.query, example.context, str(example.answer), example.get("kind", ""))
    if not item.score(answer):
        return 0.0, f"Wrong answer: expected {example.answer!r}, got {answer.strip()[:200]!r}."
    if result is None:
        return 1.0, "Right answer."
    if result.finish_reason != "final":
        return 0.0, f"Right answer, but the run ended by {result.finish_reason!r} instead of calling FINAL."
    return 1.0, "Right answer, handed to FINAL and accepted as founded on the code's output."


def founded_and_correct(example: dspy.Example, prediction: Any, trace: Any = None) -> bool:
    """BootstrapFewShot's metric: keep the run only if it earned its answer."""
    return judge(example, prediction)[0] == 1.0


def score_with_feedback(
    gold: dspy.Example, pred: Any, trace: Any = None, pred_name: str | None = None, pred_trace: Any = None
) -> dspy.Prediction:
    """GEPA's metric: the same score, with the reason as feedback for its reflection model."""
    score, feedback = judge(gold, pred)
    return dspy.Prediction(score=score, feedback=feedback)
