"""Reading the `--context` arguments of `rlm ask` (and `rlm batch` items): files, folders of files, or `-`.

The entry point: each argument read in turn, under one size cap (file names count, as the bytes the
context holds for them) that stops a mistaken `--context /`. A folder is walked by `rlm.context_folder`
(hidden and ignored paths left out, no symlink followed); a file or stdin is read up to the cap and
decoded by `rlm.context_reads`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rlm.context_folder import read_folder
from rlm.context_reads import LoadReport, budget_left, count_text, read_file, read_stdin
from rlm.errors import ContextError
from rlm.gitignore import Globs

__all__ = ["DEFAULT_MAX_BYTES", "LoadReport", "load_context", "read_context"]

# About 12M tokens: a mistaken `--context /` stops here.
DEFAULT_MAX_BYTES = 50_000_000


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
        return count_text(report, read_stdin(max_bytes), max_bytes, "-", in_folder=False), report
    wanted = Globs(include) if include else None
    unwanted = Globs(exclude or [])
    documents: dict[str, str] = {}
    for raw in paths:
        path = Path(raw)
        if raw == "-":
            report.name_bytes += len("<stdin>")
            documents["<stdin>"] = count_text(report, read_stdin(budget_left(report, max_bytes)), max_bytes, raw, False)
        elif _is_dir(path, raw):
            documents.update(read_folder(path, raw, wanted, unwanted, report, max_bytes))
        elif path.is_file():
            try:
                got = read_file(str(path), budget_left(report, max_bytes), follow=True)
            except OSError as error:
                raise ContextError(f"Cannot read context file {raw}: {error.strerror or error}") from None
            if got == "binary":
                raise ContextError(f"{path} looks like a binary file; give text files as context")
            if isinstance(got, str):
                raise ContextError(f"Context file {raw} is not a regular file; give text files as context")
            documents[str(path)] = count_text(report, got, max_bytes, raw, in_folder=False)
        else:
            raise ContextError(f"Context file not found: {raw}")
    if not documents:
        raise ContextError(f"No readable text files in {', '.join(paths)}")
    if len(documents) == 1 and len(paths) == 1 and not Path(paths[0]).is_dir():
        text = next(iter(documents.values()))
        if not text.strip():  # said here, where the file's name is known (the run would refuse it unnamed)
            raise ContextError(f"{paths[0]} is empty (or only whitespace): there is nothing to ask about in it")
        return text, report
    return documents, report


def _is_dir(path: Path, raw: str) -> bool:
    """Whether `path` is a folder; a path the system cannot even look at (a name too long, a folder
    above it we may not enter) is a ContextError, not an OSError out of load_context (round 24)."""
    try:
        return path.is_dir()  # is_file() after it stats the same path: it passes where this one did
    except OSError as error:
        raise ContextError(f"Cannot read context path {raw}: {error.strerror or error}") from None
