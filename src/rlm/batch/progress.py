"""A batch on the terminal: the live progress line (done, failed, cost, ETA) and the summary table.

`ProgressLine` is fed each result by the runner; `summary_table` turns result rows into the table
that `rlm batch` prints at the end and `rlm view results.jsonl` prints again.
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any, TextIO

from rlm.batch.result import BatchResult


class ProgressLine:
    """One line on stderr, redrawn in place on a terminal, repeated every few seconds otherwise."""

    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        self.total = total
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.interval = 0.2 if self.tty else 5.0
        self.done = self.failed = 0
        self.cost = 0.0
        self.started = time.monotonic()
        self._shown = 0.0
        self._shown_done = -1

    def update(self, result: BatchResult) -> None:
        self.done += 1
        self.failed += not result.ok
        self.cost += result.cost or 0.0
        now = time.monotonic()
        if now - self._shown >= self.interval or self.done == self.total:
            self._shown = now
            self._show(final=False)

    def finish(self) -> None:
        if self.tty or self._shown_done != self.done:
            self._show(final=True)

    def line(self) -> str:
        elapsed = time.monotonic() - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        left = self.total - self.done
        eta = _clock(left / rate) if rate > 0 and left > 0 else ("-" if left else "0:00")
        return (
            f"batch {self.done}/{self.total} done, {self.failed} failed, ${self.cost:.4f}, "
            f"{rate:.2f} items/s, elapsed {_clock(elapsed)}, ETA {eta}"
        )

    def _show(self, final: bool) -> None:
        self._shown_done = self.done
        if self.tty:  # the CLI's stream shows control characters as text: redraw through the one it wraps
            terminal = getattr(self.stream, "unfiltered", self.stream)
            terminal.write("\r\x1b[K" + self.line() + ("\n" if final else ""))
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()


def summary_table(rows: Iterable[dict[str, Any]], notes: Iterable[str] = ()) -> str:
    """The batch at a glance: outcomes, finish reasons, error classes, usage, cost and time per item."""
    rows = list(rows)
    ok = [r for r in rows if r.get("status") == "ok"]
    failed = [r for r in rows if r.get("status") != "ok"]
    # Each number read through _number: a results file may hold rows someone else edited
    # ("llm_calls": "5"), and a resumed `rlm batch` ended in TypeError at its summary (round 26).
    costs = [_number(r.get("cost"), None) for r in rows if _number(r.get("llm_calls")) > 0]
    known = [c for c in costs if c is not None]
    cost = f"${sum(known):.4f}" if known or not costs else "unknown"
    if len(known) < len(costs):
        cost += f" ({len(costs) - len(known)} items unpriced)"
    times = sorted(float(_number(r.get("wall_time_s"))) for r in rows)
    table = [
        ("items", f"{len(rows)}: {len(ok)} ok, {len(failed)} failed"),
        ("finish reasons", _counts(r.get("finish_reason") for r in ok)),
        ("errors", _counts(r.get("error_class") for r in failed)),
        ("LM calls", str(sum(int(_number(r.get("llm_calls"))) for r in rows))),
        (
            "tokens",
            f"{sum(int(_number(r.get('prompt_tokens'))) for r in rows):,} prompt + "
            f"{sum(int(_number(r.get('completion_tokens'))) for r in rows):,} completion",
        ),
        ("cost", cost),
        ("time per item", _times(times)),
    ]
    table += [("note", note) for note in notes]
    width = max(len(name) for name, _ in table)
    lines = [f"{name:<{width}}  {value}" for name, value in table]
    for row in failed[:5]:
        lines.append(
            f"{'failed':<{width}}  {_short(row.get('id'), 80)}: {_short(row.get('error_class'), 80)}: "
            f"{_short(row.get('error'))}"
        )
    if len(failed) > 5:
        lines.append(f"{'':<{width}}  ... and {len(failed) - 5} more")
    return "\n".join(lines)


def _number(value: Any, default: Any = 0) -> Any:
    """An int or a finite float as written by rlm (not a bool, not text); anything else is `default`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return default
    if isinstance(value, float) and not math.isfinite(value):
        return default
    if isinstance(value, int) and abs(value) >= 1 << 63:  # float() of a 5,000-digit int overflows
        return default
    return value


def _text(value: Any) -> str:
    """A field as text; a value rlm never writes there (a list, an object) by its type, never by str(),
    which raised RecursionError on one nested past the recursion limit."""
    if value is None or isinstance(value, str):
        return value or ""
    if isinstance(value, (bool, float)) or (isinstance(value, int) and abs(value) < 1 << 63):
        return str(value)
    return f"<{type(value).__name__}>"


def _counts(values: Iterable[Any]) -> str:
    counted = Counter(_text(v) for v in values if v)
    return ", ".join(f"{name} {n}" for name, n in counted.most_common()) or "-"


def _times(times: list[float]) -> str:
    if not times:
        return "-"
    p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
    return (
        f"mean {statistics.fmean(times):.2f} s, median {statistics.median(times):.2f} s, "
        f"p95 {p95:.2f} s, max {times[-1]:.2f} s"
    )


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def _short(text: Any, limit: int = 120) -> str:
    line = " ".join(_text(text).split())
    return line if len(line) <= limit else line[:limit] + "..."
