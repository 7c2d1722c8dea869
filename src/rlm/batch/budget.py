"""What a batch may spend in total (LM calls, tokens, USD), and counters of what the runners did.

The runners check `BatchBudget.exhausted` before scheduling each item; results feed it as they
finish. Items already running when it is spent finish and are recorded; the rest stay unrun, so
re-running the command (with a larger budget) picks them up.
"""

from __future__ import annotations

from dataclasses import dataclass

from rlm.batch.result import BatchResult
from rlm.errors import ConfigurationError


@dataclass
class BatchBudget:
    calls: int | None = None
    tokens: int | None = None
    cost_usd: float | None = None
    spent_calls: int = 0
    spent_tokens: int = 0
    spent_usd: float = 0.0
    unpriced: int = 0  # results whose cost the price table does not know (counted as 0 USD)

    def __post_init__(self) -> None:
        for name in ("calls", "tokens", "cost_usd"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigurationError(f"the batch budget's {name} must be positive, got {value!r}")

    def spend(self, result: BatchResult) -> None:
        self.spent_calls += result.llm_calls
        self.spent_tokens += result.tokens
        if result.cost is None:
            self.unpriced += result.llm_calls > 0
        else:
            self.spent_usd += result.cost

    @property
    def exhausted(self) -> bool:
        return (
            (self.calls is not None and self.spent_calls >= self.calls)
            or (self.tokens is not None and self.spent_tokens >= self.tokens)
            or (self.cost_usd is not None and self.spent_usd >= self.cost_usd)
        )

    def describe(self) -> str:
        parts = []
        if self.calls is not None:
            parts.append(f"{self.spent_calls}/{self.calls} LM calls")
        if self.tokens is not None:
            parts.append(f"{self.spent_tokens}/{self.tokens} tokens")
        if self.cost_usd is not None:
            parts.append(f"${self.spent_usd:.4f}/${self.cost_usd:g}")
        return ", ".join(parts)


@dataclass
class BatchStats:
    """Counts a batch reports next to its results."""

    total: int = 0  # items in the input
    skipped: int = 0  # already in the results file (done, or failed without --retry-failed)
    finished: int = 0  # run in this call, ok or failed
    not_started: int = 0  # left unrun because the budget was spent
    context_loads: int = 0  # contexts read from disk (or memory) by the runner
    context_puts: int = 0  # Ray: contexts put in the object store
    worker_context_loads: int = 0  # Ray: contexts fetched by a worker (once per worker and context)
