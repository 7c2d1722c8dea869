"""Reading one `--context` file or stdin under the context's size cap, and counting it in a LoadReport.

`rlm.context_files` (files named outright, `-`) and `rlm.context_folder` (each file of a folder) read
through here. A file is opened once and checked on that descriptor (a FIFO or device is never read),
and no file or stdin is read past the budget left: a sparse file of a terabyte costs a stat. stdin is
read up to the cap and decoded as files are.
"""

from __future__ import annotations

import os
import stat
import sys
from dataclasses import dataclass, field

from rlm.errors import ContextError
from rlm.gitignore import as_bytes

# The binary check looks at this much of a file before the rest is read.
_HEAD_BYTES = 8192

# Opening a file in a folder: never through a symlink (it may point anywhere: ~/.aws/credentials,
# /proc/self/mem), never waiting (a FIFO). getattr: Windows has neither flag, and needs O_BINARY.
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


@dataclass
class LoadReport:
    """What `load_context` read and what it left out, for the line `rlm ask` prints."""

    files: int = 0
    bytes: int = 0  # of text
    name_bytes: int = 0  # of the names a folder's files are held under: they count against the cap too
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def line(self) -> str:
        left_out = ", ".join(f"{count} {reason}" for reason, count in sorted(self.skipped.items()))
        return f"loaded {_files(self.files)}, {self.bytes:,} bytes" + (f" (left out: {left_out})" if left_out else "")


def _files(count: int) -> str:
    return f"{count} file" if count == 1 else f"{count} files"


def budget_left(report: LoadReport, max_bytes: int) -> int:
    return max_bytes - report.bytes - report.name_bytes


@dataclass
class Read:
    data: bytes  # at most the budget left plus one byte: more tells that the file passes the cap
    size: int  # the file's size as far as known (its st_size, or what was read past it)


def read_stdin(budget: int) -> Read:
    """stdin's bytes, up to `budget` + 1 (`yes | rlm ask q --context -` ends at the cap)."""
    stream = sys.stdin
    if stream is None:
        raise ContextError("--context - reads stdin, and there is none")
    limit = max(budget, 0) + 1  # never read(-1): that reads all there is
    try:
        buffer = getattr(stream, "buffer", None)
        data = buffer.read(limit) if buffer is not None else as_bytes(stream.read(limit))
    except (OSError, ValueError) as error:  # ValueError: a closed stream
        raise ContextError(f"Cannot read stdin for --context -: {error}") from None
    return Read(data, len(data))


def read_file(path: str, budget: int, follow: bool, dir_fd: int | None = None, text: bool = True) -> Read | str:
    """What a regular file holds, up to `budget` + 1 bytes; or why it is left out ("binary", "special").

    The file is opened once (without following a last-component symlink unless `follow`; relative to
    `dir_fd` when given) and everything is checked on that descriptor: a FIFO or device is never read,
    and nothing past the budget is read (a sparse file of a terabyte costs a stat). `text`: whether a
    NUL byte in its head makes it "binary". OSError (unreadable, a symlink: ELOOP) is the caller's to judge.
    """
    fd = os.open(path, _OPEN_FLAGS | (0 if follow else NOFOLLOW), dir_fd=dir_fd)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return "special"
        data = _read_up_to(fd, _HEAD_BYTES)
        if text and b"\0" in data:
            return "binary"  # checked on the head, before any more is read
        if len(data) == _HEAD_BYTES and info.st_size <= budget:
            data += _read_up_to(fd, budget + 1 - len(data))
        return Read(data, max(info.st_size, len(data)))
    finally:
        os.close(fd)


def _read_up_to(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    left = limit
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def count_text(report: LoadReport, got: Read, max_bytes: int, source: str, in_folder: bool) -> str:
    """The file's text, counted in the report; ContextError once the context passes `max_bytes`."""
    report.files += 1
    if got.size > budget_left(report, max_bytes):
        report.bytes += got.size
        _over_cap(report, max_bytes, source, in_folder)
    try:
        text, size = got.data.decode("utf-8"), len(got.data)
    except UnicodeDecodeError:
        text = got.data.decode("utf-8", errors="replace")
        size = len(text.encode())  # what the model's context holds: a replaced byte takes three
    report.bytes += size
    if budget_left(report, max_bytes) < 0:
        _over_cap(report, max_bytes, source, in_folder)
    return text


def _over_cap(report: LoadReport, max_bytes: int, source: str, in_folder: bool) -> None:
    passed = f"The context passes the {max_bytes:,}-byte cap after {_files(report.files)} (at {source})"
    if in_folder:
        raise ContextError(
            f"{passed}: narrow it with --include/--exclude (globs such as '*.py' or 'docs/**'), add a .gitignore, "
            "or raise --max-bytes"
        )
    if source == "-":
        raise ContextError(f"{passed}: raise --max-bytes, or pipe less text to --context -")
    # A file named outright: globs and .gitignore do not apply to it.
    raise ContextError(f"{passed}, {report.bytes:,} bytes: raise --max-bytes, or pass less text (fewer files, or "
                       "a part of the file through stdin with --context -)")  # fmt: skip
