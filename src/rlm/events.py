"""Events the engine emits while a tree of RLM nodes runs.

Graph, history, usage totals and progress display subscribe to these; the REPL loop itself
knows nothing about any of them. Events are immutable and carry plain data only.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class NodeStarted:
    node_id: str
    parent_id: str | None
    depth: int
    query: str
    context_length: int
    model: str
    kind: str = "rlm"  # "rlm" for a REPL node, "llm" for a plain sub-LM call
    timestamp: float = 0.0


@dataclass(frozen=True)
class LMCalled:
    node_id: str
    depth: int
    model: str
    purpose: str  # "step", "answer_now", "llm_query", "recursive_leaf"
    messages: tuple[dict[str, str], ...]
    output: str | None
    prompt_tokens: int
    completion_tokens: int
    cost: float | None
    latency_s: float
    error: str | None = None
    timestamp: float = 0.0
    # Of `prompt_tokens`, how many the provider read from its prompt cache (its own usage field:
    # OpenAI's `prompt_tokens_details.cached_tokens`, Anthropic's `cache_read_input_tokens`).
    cached_prompt_tokens: int = 0


@dataclass(frozen=True)
class StepExecuted:
    node_id: str
    depth: int
    iteration: int
    reply: str
    code: str
    output: str
    error: str | None
    duration_s: float


@dataclass(frozen=True)
class NodeFinished:
    node_id: str
    depth: int
    answer: str | None
    finish_reason: str
    iterations: int
    duration_s: float
    error: str | None = None


@dataclass(frozen=True)
class LimitReached:
    """A limit tripped: a sub-call refused, a size clipped, a child queued or cut short, a budget
    spent, a step stopped by the sandbox.

    `limit` names the setting: "max_llm_calls", "max_tokens_total", "max_cost_usd", "max_time_s",
    "max_step_seconds", "max_live_sandboxes", "max_output_chars", "max_answer_chars",
    "sub_prompt_chars", "max_batch_items", "exec_timeout", "memory_limit_mb"; or "worker_restart"
    when a crashed or misbehaving sandbox worker was replaced.
    """

    node_id: str
    depth: int
    limit: str
    detail: str
    timestamp: float = 0.0


Event = NodeStarted | LMCalled | StepExecuted | NodeFinished | LimitReached
Subscriber = Callable[[Event], Any]


@dataclass
class EventBus:
    """Delivers each event to every subscriber, one event at a time.

    Sub-calls run on several threads; the lock keeps subscribers free of their own locking.
    """

    subscribers: list[Subscriber] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def subscribe(self, subscriber: Subscriber) -> None:
        self.subscribers.append(subscriber)

    def emit(self, event: Event) -> None:
        with self._lock:
            for subscriber in self.subscribers:
                subscriber(event)
