"""The results file: one JSON line per finished item, appended so that a kill never leaves a torn row.

Each row is one `write` of a complete line, then fsync. On open, a trailing partial line (the
runner was killed mid-write) is cut off, and rows are deduplicated by id, the last complete row
winning; the file is rewritten (temporary file + rename) when that changed anything.
Used by the batch runner; `load_results` reads a file without changing it (`rlm view`).
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any

from rlm.batch.result import redact
from rlm.engine.answer_types import to_json_data
from rlm.errors import ConfigurationError
from rlm.terminal import file_safe


def load_results(path: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """id -> its last complete row; a torn last line and lines that are not JSON objects are left out."""
    rows, _ = _parse(Path(path).read_bytes())
    return rows


class ResultStore:
    """Append-only, crash-safe results of one batch; one writer at a time (a lock file beside it)."""

    def __init__(self, path: str | os.PathLike[str], secrets: tuple[str, ...] = ()) -> None:
        self.path = Path(path)
        self.secrets = secrets
        self.rows: dict[str, dict[str, Any]] = {}
        self._fd: int | None = None
        self._lock_fd: int | None = None
        self._superseded = 0  # rows appended in this run that replace an earlier row of the same id

    def __enter__(self) -> ResultStore:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> dict[str, dict[str, Any]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise ConfigurationError(
                f"another `rlm batch` is writing {self.path}; wait for it to end or choose another --out"
            ) from None
        data = self.path.read_bytes() if self.path.exists() else b""
        self.rows, clean = _parse(data)
        if not clean:
            self._rewrite()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        return self.rows

    def append(self, row: dict[str, Any]) -> None:
        assert self._fd is not None, "open the store first"
        line = file_safe(redact(_json_line(row), self.secrets)) + "\n"
        data = line.encode("utf-8", "replace")  # a lone surrogate (an input's "\ud800") must not lose the row
        # One write of the whole line: a kill leaves either nothing or a partial last line, which
        # the next open cuts off. A short write (rare on a local disk) continues where it stopped.
        written = os.write(self._fd, data)
        while written < len(data):
            written += os.write(self._fd, data[written:])
        os.fsync(self._fd)
        if self.rows.pop(row["id"], None) is not None:
            self._superseded += 1
        try:
            written_row = json.loads(line)
        except (ValueError, RecursionError):  # written at a shallower stack than it is read here
            written_row = {"id": row["id"], "status": row.get("status")}
        self.rows[row["id"]] = written_row  # last row wins, in the last place (as on reopening)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            if self._superseded:  # e.g. --retry-failed: leave one row per id behind
                self._rewrite()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the lock
            self._lock_fd = None

    def _rewrite(self) -> None:
        temporary = self.path.with_name(f".{self.path.name}.tmp")
        with temporary.open("w", encoding="utf-8", errors="replace") as out:
            for row in self.rows.values():
                out.write(file_safe(_json_line(row, typed=False)) + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, self.path)
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself survives a power cut
        finally:
            os.close(directory)
        self._superseded = 0


def _parse(data: bytes) -> tuple[dict[str, dict[str, Any]], bool]:
    """(id -> last row, whether the bytes already were exactly one complete row per id)."""
    end = data.rfind(b"\n") + 1
    clean = end == len(data)
    rows: dict[str, dict[str, Any]] = {}
    for line in data[:end].splitlines():
        try:
            row = json.loads(line)
        # ValueError: not JSON, not UTF-8, or an integer past Python's digit limit; RecursionError: nested too deep
        except (ValueError, RecursionError):
            row = None
        if not isinstance(row, dict) or not isinstance(row.get("id"), str):
            clean = False
            continue
        if row["id"] in rows:
            clean = False
            del rows[row["id"]]  # the last row wins, and takes the last place
        rows[row["id"]] = row
    return rows, clean


def _json_line(row: dict[str, Any], typed: bool = True) -> str:
    """The row as one JSON line, its typed value as JSON data: json.dumps refused a tuple key
    (`default` does not apply to keys) and one row ended the batch (attack round 22). Never raises:
    a field that cannot be written (an item's `meta` nested past the encoder's reach: its fallback
    `str()` raised the RecursionError again and the item's row was lost, round 26) becomes a short
    note saying so, and the row is written. `typed`: False for rows read back from the file."""
    try:
        if typed and row.get("value") is not None:
            row = {**row, "value": to_json_data(row["value"])}
        return json.dumps(row, ensure_ascii=False, default=str)
    except (TypeError, ValueError, RecursionError):  # keep the row: each field that can be written, as it is
        pass
    try:
        return json.dumps({name: _field(value) for name, value in row.items()}, ensure_ascii=False, default=str)
    except (TypeError, ValueError, RecursionError):  # a field one level from the encoder's reach: text only
        return json.dumps({name: _scalar_or_note(value) for name, value in row.items()}, ensure_ascii=False)


def _field(value: Any) -> Any:
    """The field as JSON text can hold it, or a note naming why it cannot be written."""
    try:
        json.dumps(value, ensure_ascii=False, default=str)  # an int past the digit limit raises too
        return value
    except (TypeError, ValueError, RecursionError) as exc:
        return f"<not writable: {type(exc).__name__}>"


def _scalar_or_note(value: Any) -> Any:
    if value is None or isinstance(value, (str, bool, float)) or (isinstance(value, int) and abs(value) < 1 << 63):
        return value
    return f"<not writable: {type(value).__name__}>"
