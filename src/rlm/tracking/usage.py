"""Usage totals of one run, built from engine events: calls, tokens (cached ones too) and cost per model, depth."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from rlm.events import Event, LMCalled, NodeStarted


@dataclass(frozen=True)
class ModelUsage:
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = 0.0  # None once any call had no known price
    cached_prompt_tokens: int = 0  # of prompt_tokens, read from the provider's prompt cache

    def add(self, event: LMCalled) -> ModelUsage:
        cost = None if self.cost is None or event.cost is None else self.cost + event.cost
        return ModelUsage(
            calls=self.calls + 1,
            prompt_tokens=self.prompt_tokens + event.prompt_tokens,
            completion_tokens=self.completion_tokens + event.completion_tokens,
            cost=cost,
            cached_prompt_tokens=self.cached_prompt_tokens + event.cached_prompt_tokens,
        )


@dataclass
class UsageTotals:
    """Subscriber: sums LM calls by model and notes the deepest node started."""

    by_model: dict[str, ModelUsage] = field(default_factory=dict)
    max_depth: int = 0
    nodes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __call__(self, event: Event) -> None:
        with self._lock:
            if isinstance(event, LMCalled):
                self.by_model[event.model] = self.by_model.get(event.model, ModelUsage()).add(event)
            elif isinstance(event, NodeStarted):
                self.nodes += 1
                self.max_depth = max(self.max_depth, event.depth)

    @property
    def llm_calls(self) -> int:
        return sum(u.calls for u in self.by_model.values())
