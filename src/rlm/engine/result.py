"""What a run returns besides the answer: the `RLMResult` of `RLM.run` / `RLMModule`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rlm.tracking.usage import ModelUsage


@dataclass(frozen=True)
class StepRecord:
    """One root step: what the model replied, the code that ran, and what came back."""

    iteration: int
    reply: str
    code: str
    output: str
    error: str | None


@dataclass(frozen=True)
class RLMResult:
    answer: str
    # "final" (FINAL / FINAL_VAR), "max_iterations", "repeated" (same code run again and again),
    # "budget" (LM calls used up), "budget_tokens", "budget_cost" or "budget_time"; all but "final"
    # come from a last "answer now" step. Child nodes (in NodeFinished events) may also end with a
    # budget reason or "time" without one.
    finish_reason: str
    iterations: int  # root steps taken
    depth: int  # deepest node reached (root = 0)
    llm_calls: int
    usage: dict[str, ModelUsage] = field(default_factory=dict)
    wall_time_s: float = 0.0
    trajectory: tuple[StepRecord, ...] = ()
    # With `run(..., output=T)`: the answer as a T (validated), or None if the last answer did not fit.
    value: Any = None

    @property
    def prompt_tokens(self) -> int:
        return sum(u.prompt_tokens for u in self.usage.values())

    @property
    def cached_prompt_tokens(self) -> int:
        """Of `prompt_tokens`, how many the providers served from their prompt caches."""
        return sum(u.cached_prompt_tokens for u in self.usage.values())

    @property
    def completion_tokens(self) -> int:
        return sum(u.completion_tokens for u in self.usage.values())

    @property
    def cost(self) -> float | None:
        """USD from LiteLLM's price table; None if any model in the run has no known price."""
        costs = [u.cost for u in self.usage.values()]
        return None if any(c is None for c in costs) else float(sum(c or 0.0 for c in costs))

    def to_dict(self) -> dict[str, object]:
        return {
            "answer": self.answer,
            "finish_reason": self.finish_reason,
            "iterations": self.iterations,
            "depth": self.depth,
            "llm_calls": self.llm_calls,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cached_prompt_tokens": self.cached_prompt_tokens,
            "cost": self.cost,
            "wall_time_s": round(self.wall_time_s, 3),
            "usage": {m: vars(u) for m, u in self.usage.items()},
            "trajectory": [vars(s) for s in self.trajectory],
        }
