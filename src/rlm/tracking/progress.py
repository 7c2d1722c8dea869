"""Live progress on a terminal: the call tree as it grows, with each node's step count.

`RLM(verbose=True)` subscribes one of these to the engine's events; programs that want their own
display pass `on_event=` instead.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass, field
from typing import TextIO

from rlm.events import Event, LimitReached, LMCalled, NodeFinished, NodeStarted, StepExecuted
from rlm.terminal import terminal_safe


def _first_line(text: str | None, size: int = 70) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line if len(line) <= size else line[: size - 1] + "…"


@dataclass
class ProgressPrinter:
    max_iterations: int
    stream: TextIO | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __call__(self, event: Event) -> None:
        line = self._line(event)
        if line is None:
            return
        out = self.stream or sys.stderr
        with self._lock:
            print(terminal_safe(line), file=out, flush=True)

    def _line(self, event: Event) -> str | None:
        if isinstance(event, NodeStarted):
            indent = "  " * event.depth
            return (
                f"{indent}▶ {event.node_id} depth {event.depth} ({event.model}) on {event.context_length:,} chars: "
                f"{_first_line(event.query, 60)}"
            )
        if isinstance(event, StepExecuted):
            indent = "  " * event.depth
            result = f"error: {_first_line(event.error)}" if event.error else _first_line(event.output) or "(no output)"
            code = _first_line(event.code) or "(no code)"
            return f"{indent}  step {event.iteration}/{self.max_iterations} {event.node_id}: {code} → {result}"
        if isinstance(event, LMCalled) and event.purpose in ("llm_query", "recursive_leaf"):
            indent = "  " * (event.depth + 1)
            status = f"error: {_first_line(event.error)}" if event.error else f"{event.latency_s:.1f}s"
            return f"{indent}↳ {event.purpose} ({event.model}) {status}"
        if isinstance(event, LimitReached):
            return f"{'  ' * (event.depth + 1)}! {event.limit}: {_first_line(event.detail, 90)}"
        if isinstance(event, NodeFinished):
            indent = "  " * event.depth
            outcome = f"error: {_first_line(event.error)}" if event.error else _first_line(event.answer, 60)
            return (
                f"{indent}■ {event.node_id} {event.finish_reason} after {event.iterations} steps, "
                f"{event.duration_s:.1f}s: {outcome}"
            )
        return None
