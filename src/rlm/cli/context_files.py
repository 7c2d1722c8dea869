"""Reading the `--context` arguments of `rlm ask`: files, folders of files, or `-` for stdin."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from rlm.errors import ContextError

# Folders often hold things no one means as context.
SKIPPED_DIRS = {".git", "__pycache__", "node_modules", ".venv", "venv", ".mypy_cache", ".pytest_cache"}


def read_context(paths: list[str]) -> Any:
    """One file: its text. Several files or a folder: a dict of relative name -> text."""
    if paths == ["-"]:
        return sys.stdin.read()
    documents: dict[str, str] = {}
    for raw in paths:
        path = Path(raw)
        if raw == "-":
            documents["<stdin>"] = sys.stdin.read()
        elif path.is_dir():
            for file in sorted(p for p in path.rglob("*") if p.is_file()):
                if not SKIPPED_DIRS & set(file.relative_to(path).parts):
                    text = _read_text(file)
                    if text is not None:
                        documents[str(file.relative_to(path.parent))] = text
        elif path.is_file():
            text = _read_text(path, required=True)
            documents[str(path)] = text or ""
        else:
            raise ContextError(f"Context file not found: {raw}")
    if not documents:
        raise ContextError(f"No readable text files in {', '.join(paths)}")
    if len(documents) == 1 and len(paths) == 1 and not Path(paths[0]).is_dir():
        return next(iter(documents.values()))
    return documents


def _read_text(path: Path, required: bool = False) -> str | None:
    data = path.read_bytes()
    if b"\0" in data[:8192]:
        if required:
            raise ContextError(f"{path} looks like a binary file; give text files as context")
        return None  # binary files inside a folder are skipped
    return data.decode("utf-8", errors="replace")
