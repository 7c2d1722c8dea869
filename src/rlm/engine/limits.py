"""Limits over the whole tree of one run: the LM-call budget, step deadlines, sizes, and the log
that turns each limit that trips into a `LimitReached` event and a line the model reads.

The `Tree` holds the budget (and the sandbox slots, in `slots.py`); `HostFunctions` and `NodeRun`
consult them at every sub-call, step and answer. Hostile model code must not get around them, so
they are enforced here, on the host, whatever sandbox runs the code.
"""

from __future__ import annotations

import functools
import threading
import time
from collections import Counter
from dataclasses import replace

from rlm.config import RLMConfig
from rlm.errors import BudgetExceededError, RLMError
from rlm.events import EventBus, LimitReached, LMCalled
from rlm.sandbox.base import ExecutionResult, clip_middle

# `clip_middle` adds a marker of under 64 characters: text a sandbox already cut to the limit
# passes untouched instead of being cut (and reported) twice.
CLIP_SLACK = 64


class LimitError(RLMError):
    """A sub-call refused by a tree-wide limit. It reaches the model's code as an error message."""

    def __init__(self, limit: str, message: str) -> None:
        super().__init__(message)
        self.limit = limit


# Why a run ended, for each budget: `finish_reason` and the `prompts` tables use these.
BUDGET_REASONS = {
    "max_llm_calls": "budget",
    "max_tokens_total": "budget_tokens",
    "max_cost_usd": "budget_cost",
    "max_time_s": "budget_time",
}


class CallBudget:
    """The tree's budgets, shared by every node (so each child gets what is left); thread-safe.

    LM calls are a hard cap, counted before each call. Tokens and USD are known only after a call,
    so the call that crosses them finishes and the next is refused; wall time from the run's start
    is checked before each call. One call is held back for the root's closing "answer now" step: a
    run that spends any budget still ends with an answer the model wrote, and the calls never pass
    `limit`.
    """

    def __init__(
        self,
        limit: int,
        reserve: int = 1,
        *,
        max_tokens_total: int | None = None,
        max_cost_usd: float | None = None,
        max_time_s: float | None = None,
    ) -> None:
        self.limit = limit
        self.reserve = min(reserve, limit)
        self.used = 0
        self.max_tokens_total = max_tokens_total
        self.max_cost_usd = max_cost_usd
        self.tokens = 0
        self.cost = 0.0
        self.deadline = None if max_time_s is None else time.monotonic() + max_time_s
        self.max_time_s = max_time_s
        self._lock = threading.Lock()

    def take(self, *, closing: bool = False) -> None:
        """Count one call, or raise BudgetExceededError; `closing` may use the held-back call."""
        with self._lock:
            self._check(closing)
            self.used += 1

    def check(self) -> None:
        """Raise BudgetExceededError if an ordinary call would not be allowed now."""
        with self._lock:
            self._check(False)

    def record(self, event: object) -> None:
        """Subscriber to the tree's events: add each finished call's tokens and cost."""
        if isinstance(event, LMCalled):
            with self._lock:
                self.tokens += event.prompt_tokens + event.completion_tokens
                self.cost += event.cost or 0.0

    def _check(self, closing: bool) -> None:
        if self.used >= (self.limit if closing else self.limit - self.reserve):
            raise BudgetExceededError(
                f"the LM-call budget of {self.limit} calls is used up ({self.used} made): no more "
                "sub-calls in this run (raise max_llm_calls to allow more)",
                limit="max_llm_calls",
            )
        spent = None if closing else self._spent()
        if spent is not None:
            raise BudgetExceededError(f"{self._describe(spent)}: no more sub-calls in this run", limit=spent)

    def _spent(self) -> str | None:
        """The first budget other than calls that is used up, by its setting's name."""
        if self.max_tokens_total is not None and self.tokens >= self.max_tokens_total:
            return "max_tokens_total"
        if self.max_cost_usd is not None and self.cost >= self.max_cost_usd:
            return "max_cost_usd"
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return "max_time_s"
        return None

    def _describe(self, limit: str) -> str:
        if limit == "max_tokens_total":
            return f"the token budget of {self.max_tokens_total} is used up ({self.tokens} tokens)"
        if limit == "max_cost_usd":
            return f"the cost budget of ${self.max_cost_usd:g} is used up (${self.cost:.4f})"
        return f"the time budget of {self.max_time_s:g} s is used up"

    @property
    def exhausted(self) -> bool:
        """True once only the held-back call for the root's last answer is left, or another
        budget is spent."""
        return self.spent_limit is not None

    @property
    def spent_limit(self) -> str | None:
        """The setting whose budget is spent (`max_llm_calls` first), or None."""
        with self._lock:
            if self.used >= self.limit - self.reserve:
                return "max_llm_calls"
            return self._spent()

    @property
    def reason(self) -> str:
        """The finish reason for the spent budget ("budget" for LM calls)."""
        return BUDGET_REASONS[self.spent_limit or "max_llm_calls"]


def deadline_passed(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


def seconds_left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def clip(text: str, limit: int) -> tuple[str, bool]:
    """`text` cut to `limit` (head and tail kept, a marker between), and whether it was cut."""
    if len(text) <= limit + CLIP_SLACK:
        return text, False
    return clip_middle(text, limit), True


class LimitLog:
    """The limits one node ran into during its current step.

    The first trip of each limit in a step is one `LimitReached` event; `drain()` gives the lines
    the model reads after the step, so it learns of refusals even when its code swallowed them.
    """

    def __init__(self, node_id: str, depth: int, bus: EventBus) -> None:
        self.node_id, self.depth, self.bus = node_id, depth, bus
        self._details: dict[str, str] = {}  # limit -> what the first trip said
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def hit(self, limit: str, detail: str, *, told: bool = False) -> None:
        """Record a trip; `told` when the step's own error already says it to the model."""
        with self._lock:
            first = self._counts[limit] == 0
            self._counts[limit] += 1
            if not told:
                self._details.setdefault(limit, detail)
        if first:
            self.bus.emit(LimitReached(self.node_id, self.depth, limit, detail, time.time()))

    def drain(self) -> list[str]:
        with self._lock:
            details, counts = self._details, self._counts
            self._details, self._counts = {}, Counter()
        return [
            f"[limit {limit}] {detail}" + (f" ({counts[limit]} times)" if counts[limit] > 1 else "")
            for limit, detail in details.items()
        ]


def clip_execution(result: ExecutionResult, config: RLMConfig, log: LimitLog) -> ExecutionResult:
    """Cut what a step produced to the configured sizes, whatever sandbox produced it, and append
    the step's limit lines to its output."""
    _note_sandbox_limits(result, log)
    output, cut_output = clip(result.output or "", config.max_output_chars)
    if cut_output:
        log.hit("max_output_chars", f"the step's output was cut to {config.max_output_chars} characters")
    error = result.error
    if error is not None:
        error, cut_error = clip(error, config.max_output_chars)
        if cut_error:
            log.hit("max_output_chars", f"the step's error text was cut to {config.max_output_chars} characters")
    final = result.final_answer
    if final is not None:
        final = clip_answer(final, config, log)
    lines = log.drain()
    if lines:
        output = "\n".join([output.rstrip(), *lines]) if output.strip() else "\n".join(lines)
    return replace(result, output=output, error=error, final_answer=final)


def _note_sandbox_limits(result: ExecutionResult, log: LimitLog) -> None:
    """Limits the sandbox enforced inside the step become events too (the error told the model)."""
    error = result.error or ""
    first_line = error.split("\n", 1)[0][:300]
    timed_out = error.startswith("TimeoutError") and "was stopped" in first_line
    if timed_out:
        log.hit("exec_timeout", first_line, told=True)
    elif result.restarted:
        log.hit("worker_restart", first_line, told=True)
    elif error.startswith("MemoryError"):
        log.hit("memory_limit_mb", first_line, told=True)


def clip_answer(answer: str, config: RLMConfig, log: LimitLog) -> str:
    clipped, cut = clip(answer, config.max_answer_chars)
    if cut:
        log.hit(
            "max_answer_chars",
            f"the answer of {len(answer)} characters was cut to {config.max_answer_chars} (head and tail kept)",
        )
    return clipped


# Characters per token assumed when a window given in tokens is turned into characters: low, so a
# prompt that passes is very likely to fit (English prose runs at about 4, code and digits lower).
CHARS_PER_TOKEN = 3


def prompt_cap(sub_prompt_chars: int, lm: object) -> tuple[int, str]:
    """The most characters one sub-call prompt may hold, and what sets it: `sub_prompt_chars`, or
    the sub-model's input window where DSPy's bundled model metadata knows it and it is smaller."""
    window = _window_tokens(str(getattr(lm, "model", "")))
    if window is not None and window * CHARS_PER_TOKEN < sub_prompt_chars:
        return window * CHARS_PER_TOKEN, f"the sub-model's window of {window} tokens"
    return sub_prompt_chars, "sub_prompt_chars"


@functools.lru_cache(maxsize=64)
def _window_tokens(model: str) -> int | None:
    provider, _, name = model.partition("/")
    if not name:
        provider, name = "openai", model
    try:
        from dspy.clients.model_metadata import model_info

        info = model_info(provider, name)
    except Exception:  # metadata is advisory: an unknown model has no known window
        return None
    tokens = getattr(info, "max_input_tokens", None) if not isinstance(info, dict) else info.get("max_input_tokens")
    return int(tokens) if isinstance(tokens, int) and tokens > 0 else None
