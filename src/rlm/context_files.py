"""Reading the `--context` arguments of `rlm ask` (and `rlm batch` items): files, folders of files, or `-`.

Folders are read the way a person means them: hidden and ignored paths (`.gitignore`, also nested
ones) are left out, `--include`/`--exclude` globs narrow them, and a size cap stops a mistaken
`--context /` before it reads a whole disk. A folder may be someone else's (a cloned repository, an
unpacked archive): symlinks in it are not followed, and no file is read past the cap.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlm.errors import ContextError
from rlm.gitignore import Globs, IgnoreFile, State

# About 12M tokens: a mistaken `--context /` stops here.
DEFAULT_MAX_BYTES = 50_000_000

# A .gitignore past these is not applied, and the report says so: no real one comes near them. The
# lines in force in a folder (its .gitignore's and its parents', counted by names and `**` in each)
# bound the work of matching one name there.
GITIGNORE_MAX_BYTES = 1 << 20
GITIGNORE_MAX_LINES = 2_000
_GITIGNORE_TOO_BIG = ".gitignore too big to apply"

# The binary check looks at this much of a file before the rest is read.
_HEAD_BYTES = 8192

# Opening a file in a folder: never through a symlink (it may point anywhere: ~/.aws/credentials,
# /proc/self/mem), never waiting (a FIFO). getattr: Windows has neither flag, and needs O_BINARY.
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)

# Folders often hold things no one means as context, ignored or not.
SKIPPED_DIRS = {"__pycache__", "node_modules", "venv", "site-packages", "dist-packages"}


@dataclass
class LoadReport:
    """What `load_context` read and what it left out, for the line `rlm ask` prints."""

    files: int = 0
    bytes: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def line(self) -> str:
        left_out = ", ".join(f"{count} {reason}" for reason, count in sorted(self.skipped.items()))
        return f"loaded {_files(self.files)}, {self.bytes:,} bytes" + (f" (left out: {left_out})" if left_out else "")


def _files(count: int) -> str:
    return f"{count} file" if count == 1 else f"{count} files"


def read_context(paths: list[str]) -> Any:
    """One file: its text. Several files or a folder: a dict of relative name -> text."""
    return load_context(paths)[0]


def load_context(
    paths: list[str],
    include: list[str] | None = None,
    exclude: list[str] | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> tuple[Any, LoadReport]:
    """The context for `paths` and a report of what was read. Files named outright are always read.

    Inside a folder, symlinks, FIFOs, devices and files that cannot be read are left out and counted;
    a file named outright may be a symlink (the user's choice), and one that cannot be read is a
    ContextError.
    """
    report = LoadReport()
    if paths == ["-"]:
        text = sys.stdin.read()
        report.files, report.bytes = 1, len(text.encode())
        return text, report
    wanted = Globs(include) if include else None
    unwanted = Globs(exclude or [])
    documents: dict[str, str] = {}
    for raw in paths:
        path = Path(raw)
        if raw == "-":
            documents["<stdin>"] = sys.stdin.read()
            report.files += 1
            report.bytes += len(documents["<stdin>"].encode())
        elif path.is_dir():
            for names, file in _folder_files(path, raw, wanted, unwanted, report):
                try:
                    got = _read_file(file, max_bytes - report.bytes, follow=False)
                except OSError as error:
                    report.skip("symlinked" if _is_link_error(error) else "unreadable")
                    continue
                if isinstance(got, str):
                    report.skip(got)
                    continue
                text = _count(report, got, max_bytes, raw, in_folder=True)
                documents[str(path.joinpath(*names).relative_to(path.parent))] = text
        elif path.is_file():
            try:
                got = _read_file(str(path), max_bytes - report.bytes, follow=True)
            except OSError as error:
                raise ContextError(f"Cannot read context file {raw}: {error.strerror or error}") from None
            if got == "binary":
                raise ContextError(f"{path} looks like a binary file; give text files as context")
            if isinstance(got, str):
                raise ContextError(f"Context file {raw} is not a regular file; give text files as context")
            documents[str(path)] = _count(report, got, max_bytes, raw, in_folder=False)
        else:
            raise ContextError(f"Context file not found: {raw}")
    if not documents:
        raise ContextError(f"No readable text files in {', '.join(paths)}")
    if len(documents) == 1 and len(paths) == 1 and not Path(paths[0]).is_dir():
        return next(iter(documents.values())), report
    return documents, report


@dataclass
class _Read:
    data: bytes  # at most the budget left plus one byte: more tells that the file passes the cap
    size: int  # the file's size as far as known (its st_size, or what was read past it)


def _read_file(path: str, budget: int, follow: bool) -> _Read | str:
    """What a regular file holds, up to `budget` + 1 bytes; or why it is left out ("binary", "special").

    The file is opened once (without following a last-component symlink unless `follow`) and
    everything is checked on that descriptor: a FIFO or device is never read, and nothing past the
    budget is read (a sparse file of a terabyte costs a stat). OSError (unreadable, a symlink: ELOOP)
    is the caller's to judge.
    """
    fd = os.open(path, _OPEN_FLAGS | (0 if follow else _NOFOLLOW))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return "special"
        data = _read_up_to(fd, _HEAD_BYTES)
        if b"\0" in data:
            return "binary"  # checked on the head, before any more is read
        if len(data) == _HEAD_BYTES and info.st_size <= budget:
            data += _read_up_to(fd, budget + 1 - len(data))
        return _Read(data, max(info.st_size, len(data)))
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


def _is_link_error(error: OSError) -> bool:
    # O_NOFOLLOW on a symlink: ELOOP on Linux, EMLINK on FreeBSD, EFTYPE on NetBSD.
    return error.errno in (errno.ELOOP, errno.EMLINK, getattr(errno, "EFTYPE", -1))


def _count(report: LoadReport, got: _Read, max_bytes: int, source: str, in_folder: bool) -> str:
    """The file's text, counted in the report; ContextError once the context passes `max_bytes`."""
    report.files += 1
    if got.size > max_bytes - report.bytes:
        report.bytes += got.size
        _over_cap(report, max_bytes, source, in_folder)
    try:
        text, size = got.data.decode("utf-8"), len(got.data)
    except UnicodeDecodeError:
        text = got.data.decode("utf-8", errors="replace")
        size = len(text.encode())  # what the model's context holds: a replaced byte takes three
    report.bytes += size
    if report.bytes > max_bytes:
        _over_cap(report, max_bytes, source, in_folder)
    return text


def _over_cap(report: LoadReport, max_bytes: int, source: str, in_folder: bool) -> None:
    passed = f"The context passes the {max_bytes:,}-byte cap after {_files(report.files)} (at {source})"
    if in_folder:
        raise ContextError(
            f"{passed}: narrow it with --include/--exclude (globs such as '*.py' or 'docs/**'), add a .gitignore, "
            "or raise --max-bytes"
        )
    # A file named outright: globs and .gitignore do not apply to it.
    raise ContextError(f"{passed}, {report.bytes:,} bytes: raise --max-bytes, or pass less text (fewer files, or "
                       "a part of the file through stdin with --context -)")  # fmt: skip


def _folder_files(
    root: Path, raw: str, wanted: Globs | None, unwanted: Globs, report: LoadReport
) -> list[tuple[tuple[str, ...], str]]:
    """(names under `root`, path) of the files to read, in sorted order, without hidden, ignored,
    excluded, not-included, symlinked or special ones.

    An explicit stack (os.walk recurses once per level before Python 3.12: a deep tree raised
    RecursionError). Each folder carries the .gitignore files in force there (its parents' and its
    own) with their matching state, so a name costs the lines in force, not the depth or every
    .gitignore seen: linear in the folder.
    """
    found: list[tuple[tuple[str, ...], str]] = []
    stack = [_Folder(str(root), (), (), unwanted.start(), wanted.start() if wanted else ())]
    while stack:
        here = stack.pop()
        try:
            with os.scandir(here.path) as listing:
                entries = sorted(listing, key=lambda entry: entry.name)
        except OSError as error:
            if not here.names:
                raise ContextError(
                    f"Cannot read the context folder {raw}: {error.strerror or error}; check that you may list it "
                    "(ls -ld), or name the files to read"
                ) from None
            report.skip("unreadable")  # a subfolder we may not list (an archive's modes, another user's)
            continue
        if any(entry.name == ".gitignore" for entry in entries):
            here = _with_gitignore(here, os.path.join(here.path, ".gitignore"), report)
        for entry in entries:
            name = entry.name
            try:
                is_link = entry.is_symlink()
                is_dir = not is_link and entry.is_dir(follow_symlinks=False)
                is_file = not is_link and not is_dir and entry.is_file(follow_symlinks=False)
            except OSError:
                report.skip("unreadable")
                continue
            reason = _left_out(here, name, is_dir, wanted, unwanted)
            if reason is None and is_link:
                reason = "symlinked"  # git and tar store symlinks: one may point at ~/.ssh or /proc
            elif reason is None and not is_dir and not is_file:
                reason = "special"  # a FIFO would wait for a writer, a device never ends
            if reason is not None:
                report.skip(reason)
            elif is_dir:
                stack.append(here.enter(entry.path, name, wanted, unwanted))
            else:
                found.append(((*here.names, name), entry.path))
    return sorted(found)


@dataclass(frozen=True)
class _Folder:
    """A folder of the walk: its path, its names under the root, and the matching state of the rules in force."""

    path: str
    names: tuple[str, ...]
    ignores: tuple[tuple[IgnoreFile, State], ...]  # each .gitignore in force, outermost first, and its state here
    unwanted: State
    wanted: State
    weight: int = 0  # the .gitignore lines in force (their names and `**`): the work of matching a name

    def enter(self, path: str, name: str, wanted: Globs | None, unwanted: Globs) -> _Folder:
        return _Folder(
            path,
            (*self.names, name),
            tuple((rules, rules.enter(state, name)) for rules, state in self.ignores),
            unwanted.enter(self.unwanted, name),
            wanted.enter(self.wanted, name) if wanted else (),
            self.weight,
        )


def _left_out(here: _Folder, name: str, is_dir: bool, wanted: Globs | None, unwanted: Globs) -> str | None:
    if name.startswith("."):
        return "hidden"
    if is_dir and name in SKIPPED_DIRS:
        return "ignored"
    for rules, state in reversed(here.ignores):  # git: a deeper .gitignore overrides its parents'
        decision = rules.decides(state, name, is_dir)
        if decision is not None:
            if decision:
                return "ignored"
            break
    if unwanted.match(here.unwanted, name, is_dir):
        return "excluded"
    if not is_dir and wanted is not None and not wanted.match(here.wanted, name, False):
        return "not included"
    return None


def _with_gitignore(here: _Folder, path: str, report: LoadReport) -> _Folder:
    """`here` with its .gitignore in force, unless it cannot be used (a symlink, a FIFO, unreadable) or is
    too big (past 1 MB, or past the lines in force that keep matching a name cheap: then the report says so)."""
    try:
        got = _read_file(path, GITIGNORE_MAX_BYTES, follow=False)
    except OSError:
        return here  # the name is counted as hidden already
    if isinstance(got, str):
        return here
    rules = (
        IgnoreFile(got.data.decode("utf-8", errors="replace").splitlines()) if got.size <= GITIGNORE_MAX_BYTES else None
    )
    if rules is None or here.weight + rules.weight > GITIGNORE_MAX_LINES:
        report.skip(_GITIGNORE_TOO_BIG)
        return here
    if not rules:
        return here
    ignores = (*here.ignores, (rules, rules.start()))
    return _Folder(here.path, here.names, ignores, here.unwanted, here.wanted, here.weight + rules.weight)
