"""Reading the `--context` arguments of `rlm ask` (and `rlm batch` items): files, folders of files, or `-`.

Folders are read the way a person means them: hidden and ignored paths (`.gitignore`, also nested
ones) are left out, `--include`/`--exclude` globs narrow them, and a size cap stops a mistaken
`--context /` before it reads a whole disk.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlm.errors import ContextError

if TYPE_CHECKING:
    import pathspec

# About 12M tokens: a mistaken `--context /` stops here. The CLI's --help shows it, so this
# module imports pathspec only when it reads a folder.
DEFAULT_MAX_BYTES = 50_000_000

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
    """The context for `paths` and a report of what was read. Files named outright are always read."""
    report = LoadReport()
    if paths == ["-"]:
        text = sys.stdin.read()
        report.files, report.bytes = 1, len(text.encode())
        return text, report
    wanted = _globs(include) if include else None
    unwanted = _globs(exclude or [])
    documents: dict[str, str] = {}
    for raw in paths:
        path = Path(raw)
        if raw == "-":
            documents["<stdin>"] = sys.stdin.read()
            report.files += 1
            report.bytes += len(documents["<stdin>"].encode())
        elif path.is_dir():
            for file in _folder_files(path, wanted, unwanted, report):
                text = _read_text(file)
                if text is None:
                    report.skip("binary")
                    continue
                _count(report, text, max_bytes, raw, in_folder=True)
                documents[str(file.relative_to(path.parent))] = text
        elif path.is_file():
            text = _read_text(path, required=True) or ""
            _count(report, text, max_bytes, raw, in_folder=False)
            documents[str(path)] = text
        else:
            raise ContextError(f"Context file not found: {raw}")
    if not documents:
        raise ContextError(f"No readable text files in {', '.join(paths)}")
    if len(documents) == 1 and len(paths) == 1 and not Path(paths[0]).is_dir():
        return next(iter(documents.values())), report
    return documents, report


def _count(report: LoadReport, text: str, max_bytes: int, source: str, in_folder: bool) -> None:
    report.files += 1
    report.bytes += len(text.encode())
    if report.bytes <= max_bytes:
        return
    passed = f"The context passes the {max_bytes:,}-byte cap after {_files(report.files)} (at {source})"
    if in_folder:
        raise ContextError(
            f"{passed}: narrow it with --include/--exclude (globs such as '*.py' or 'docs/**'), add a .gitignore, "
            "or raise --max-bytes"
        )
    # A file named outright: globs and .gitignore do not apply to it.
    raise ContextError(f"{passed}, {report.bytes:,} bytes: raise --max-bytes, or pass less text (fewer files, or "
                       "a part of the file through stdin with --context -)")  # fmt: skip


def _globs(patterns: list[str]) -> pathspec.PathSpec:
    import pathspec

    return pathspec.PathSpec.from_lines("gitwildmatch", patterns)


def _folder_files(
    root: Path, wanted: pathspec.PathSpec | None, unwanted: pathspec.PathSpec, report: LoadReport
) -> list[Path]:
    """Files under `root` in sorted order, without hidden, ignored, excluded or not-included ones."""
    import pathspec

    ignores: list[tuple[Path, pathspec.PathSpec]] = []
    found: list[Path] = []
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        gitignore = here / ".gitignore"
        if gitignore.is_file():
            lines = gitignore.read_text(encoding="utf-8", errors="replace").splitlines()
            ignores.append((here, pathspec.GitIgnoreSpec.from_lines(lines)))

        def left_out(name: str, is_dir: bool, here: Path = here) -> str | None:
            if name.startswith("."):
                return "hidden"
            if is_dir and name in SKIPPED_DIRS:
                return "ignored"
            full = here / name
            for base, spec in ignores:
                if base == full or base not in full.parents:
                    continue
                relative = full.relative_to(base).as_posix() + ("/" if is_dir else "")
                if spec.match_file(relative):
                    return "ignored"
            relative = full.relative_to(root).as_posix() + ("/" if is_dir else "")
            if unwanted.match_file(relative):
                return "excluded"
            if not is_dir and wanted is not None and not wanted.match_file(relative):
                return "not included"
            return None

        kept_dirs = []
        for name in sorted(dirs):
            reason = left_out(name, is_dir=True)
            if reason is None:
                kept_dirs.append(name)
            else:
                report.skip(reason)
        dirs[:] = kept_dirs
        for name in sorted(files):
            reason = left_out(name, is_dir=False)
            if reason is None and (here / name).is_file():
                found.append(here / name)
            elif reason is not None:
                report.skip(reason)
    return sorted(found)


def _read_text(path: Path, required: bool = False) -> str | None:
    data = path.read_bytes()
    if b"\0" in data[:8192]:
        if required:
            raise ContextError(f"{path} looks like a binary file; give text files as context")
        return None  # binary files inside a folder are skipped
    return data.decode("utf-8", errors="replace")
