"""LLM-call history: one record per LM call of every node, fed by `LMCalled` events.

Prompts hold the context's description, never the context, so records stay small.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from rlm.events import Event, LMCalled
from rlm.terminal import file_safe, terminal_safe


@dataclass
class CallHistory:
    records: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __call__(self, event: Event) -> None:
        if isinstance(event, LMCalled):
            record = {
                "time": datetime.fromtimestamp(event.timestamp, timezone.utc).isoformat(),
                "node_id": event.node_id,
                "depth": event.depth,
                "model": event.model,
                "purpose": event.purpose,
                "messages": [dict(m) for m in event.messages],
                "output": event.output,
                "prompt_tokens": event.prompt_tokens,
                "completion_tokens": event.completion_tokens,
                "cached_prompt_tokens": event.cached_prompt_tokens,
                "cost": event.cost,
                "latency_s": round(event.latency_s, 4),
                "error": event.error,
            }
            with self._lock:
                self.records.append(record)

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self.records]

    def clear(self) -> None:
        with self._lock:
            self.records.clear()

    def save(self, path: str | Path, pretty: bool = True) -> Path:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        # errors="replace": a lone surrogate in a user's query or document must not cost the whole file
        text = file_safe(json.dumps(self.snapshot(), indent=2 if pretty else None, ensure_ascii=False))
        target.write_text(text, encoding="utf-8", errors="replace")
        return target

    def print(self, detailed: bool = False, max_length: int = 500, file: TextIO | None = None) -> None:
        import sys

        out = file or sys.stdout
        records = self.snapshot()
        if not records:
            print("(no LM calls recorded)", file=out)
            return
        for i, r in enumerate(records, 1):
            cost = "?" if r["cost"] is None else f"${r['cost']:.6f}"
            print(
                f"#{i} {r['time']} node={r['node_id']} depth={r['depth']} {r['purpose']} model={r['model']} "
                f"tokens={r['prompt_tokens']}+{r['completion_tokens']} cost={cost} {r['latency_s']:.2f}s"
                + (f" ERROR {terminal_safe(r['error'])}" if r["error"] else ""),
                file=out,
            )
            if detailed:
                for m in r["messages"]:
                    print(f"  [{m['role']}] {_cut(m['content'], max_length)}", file=out)
                print(f"  [output] {_cut(r['output'] or '', max_length)}", file=out)


def _cut(text: str, limit: int) -> str:
    text = terminal_safe(text).replace("\n", "\n    ")
    return text if len(text) <= limit else f"{text[:limit]}... [{len(text) - limit} more chars]"
