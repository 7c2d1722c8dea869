"""Batch items: reading them (JSONL, Parquet, or Python dicts) and loading each item's context.

Called by `rlm.batch` and `rlm batch`. Structural problems (bad JSON, a missing id or query, a
duplicate id) stop the batch before anything runs; a problem of one item's context or settings is
recorded on that item when it runs, so the rest of the batch goes on.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from rlm.errors import ConfigurationError, ContextError
from rlm.install_check import install_hint
from rlm.utf8 import utf8_text

# The most text one item's context may hold (files and folders): far above any one model's reach.
BATCH_MAX_BYTES = 10 << 30

# The fields an item may have besides its RLM settings.
ITEM_FIELDS = ("id", "query", "context", "context_path", "context_glob", "output", "meta")
CONTEXT_FIELDS = ("context", "context_path", "context_glob")

# RLM(...) arguments that belong to the whole batch, not to one item: models and keys are the
# runner's (and keys must never travel inside items), output paths are chosen per item by the runner.
BATCH_WIDE_SETTINGS = {
    "model",
    "recursive_model",
    "api_key",
    "api_base",
    "sandbox",
    "enable_graph_tracking",
    "graph_output_path",
    "enable_history",
    "history_output_path",
    "on_event",
    "verbose",
}


@dataclass(frozen=True)
class ContextSpec:
    """Where an item's context comes from: inline data, paths (files or folders), or a glob."""

    kind: str  # "inline" | "paths" | "glob"
    value: Any  # the inline context, a tuple of absolute paths, or an absolute glob pattern

    @cached_property
    def key(self) -> str:
        """Equal for items that share a context, so it is loaded (and sent to Ray) once. Never raises:
        an inline context json.dumps cannot write (Parquet bytes, decimals, nesting past the encoder's
        reach) ended the whole batch before any item ran (attack round 26); it is keyed by the object
        itself then, shared only by the items that hold that very object, and its own run says what
        is wrong with it."""
        if self.kind != "inline":
            return f"{self.kind}:{json.dumps(self.value)}"  # absolute paths or one pattern: str only
        try:
            text = self.value if isinstance(self.value, str) else json.dumps(self.value, sort_keys=True)
            return "inline:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
        except (TypeError, ValueError, RecursionError, UnicodeError):
            return f"inline-object:{id(self.value)}"  # items live as long as the batch: ids stay distinct

    def load(self) -> Any:
        """The context: inline data as given; one file as its text; folders or several files as a dict."""
        from rlm.context_files import load_context  # files, folders, binary-file checks: one reader

        if self.kind == "inline":
            return self.value
        if self.kind == "glob":
            documents = _read_glob(self.value)
            paths = list(documents)
            if len(paths) == 1:
                return {os.path.basename(paths[0]): documents[paths[0]]}
        else:
            paths = list(self.value)
            # No size cap: an item names its context outright (the 50 MB cap guards `rlm ask`'s
            # folders), and a shared 100 MB corpus is what the batch runner loads once per worker.
            documents = load_context(paths, max_bytes=BATCH_MAX_BYTES)[0]
        if isinstance(documents, dict):
            # Names relative to the common folder read better to the model than absolute paths.
            common = os.path.commonpath([str(Path(p).parent) for p in paths])
            documents = {_relative(name, common): text for name, text in documents.items()}
        return documents


def _read_glob(pattern: str) -> dict[str, str]:
    """The files an absolute glob pattern matches (absolute path -> text), read by the folder reader.

    glob.glob followed symlinks to files and folders: a cloned repository's `src/evil.py ->
    ~/.aws/credentials` was read, and two links to their own folder made the walk endless (attack
    round 26). The pattern's fixed folder (its components before the first wildcard) is named
    outright, as a `context_path` folder is; below it the folder reader walks by descriptors, with
    its rules: no symlink followed, hidden, .gitignored and special files left out. The rest of the
    pattern picks the files read (as glob reads it: a folder it matches does not bring its contents)
    and then the names glob would match.
    """
    from rlm.context_folder import read_folder
    from rlm.context_reads import LoadReport
    from rlm.gitignore import FileGlobs, Globs

    parts = Path(pattern).parts
    first = next((n for n, part in enumerate(parts) if _GLOB_MAGIC.search(part)), len(parts) - 1)
    first = max(first, 1)  # "/" itself is never the pattern part
    # A run of `**` matches what one does: collapsed, or matching walked it from every position in it
    # (4,000 in a row: 2.6 s of CPU a file, attack round 27).
    rest: list[str] = []
    for part in parts[first:]:
        if not (part == "**" and rest[-1:] == ["**"]):
            rest.append(part)
    root, wanted = Path(*parts[:first]), tuple(rest)
    try:
        is_dir = root.is_dir()
    except OSError:
        is_dir = False
    found: dict[str, str] = {}
    if is_dir:
        read = read_folder(
            root, str(root), FileGlobs(["/" + "/".join(wanted)]), Globs([]), LoadReport(), BATCH_MAX_BYTES
        )
        lead = len(root.relative_to(root.parent).parts)  # the reader names files under root's parent
        for name, text in read.items():
            under = Path(name).parts[lead:]
            if _glob_matches(wanted, under):
                found[str(root.joinpath(*under))] = text
    if not found:
        raise ContextError(
            f"context_glob {pattern!r} matches no files (symlinks, hidden, ignored and binary files are left out, "
            "as in a folder)"
        )
    return found


_GLOB_MAGIC = re.compile(r"[*?[]")


def _glob_matches(pattern: tuple[str, ...], names: tuple[str, ...]) -> bool:
    """Whether the path `names` matches glob's recursive `pattern` (`**` alone: any number of folders).
    Run over a set of positions, not by recursion: a folder may be thousands deep."""
    at = _past_stars(pattern, {0})
    for name in names:
        nxt: set[int] = set()
        for n in at:
            if n < len(pattern) and pattern[n] == "**":
                nxt.add(n)
            elif n < len(pattern) and fnmatch.fnmatchcase(name, pattern[n]):
                nxt.add(n + 1)
        at = _past_stars(pattern, nxt)
        if not at:
            return False
    return len(pattern) in at


def _past_stars(pattern: tuple[str, ...], at: set[int]) -> set[int]:
    """`at` with the positions past each `**` added (it may match no folder)."""
    more = set(at)
    for n in sorted(at):
        while n < len(pattern) and pattern[n] == "**":
            n += 1
            more.add(n)
    return more


@dataclass(frozen=True)
class BatchItem:
    """One question: `id`, `query`, its context, and optional `output` type, RLM settings and `meta`."""

    id: str
    query: str
    context: ContextSpec
    settings: Mapping[str, Any] = field(default_factory=dict)  # per-item RLM keyword settings
    output: str | None = None
    meta: Any = None  # copied to the item's result row untouched (e.g. the expected answer)


def read_items(source: str | os.PathLike[str] | Iterable[Mapping[str, Any] | BatchItem]) -> list[BatchItem]:
    """Items from a .jsonl / .parquet file, or from dicts / BatchItems; ids must be unique."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        rows = _read_rows(path)
        base = path.resolve().parent  # paths inside an items file are relative to that file
        items = [_item(row, base, f"{path}:{where}") for where, row in rows]
    else:
        base = Path.cwd()
        items = [
            row if isinstance(row, BatchItem) else _item(row, base, f"item {index + 1}")
            for index, row in enumerate(source)
        ]
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise ConfigurationError(f"duplicate item id {item.id!r}: ids must be unique (they key the results)")
        seen.add(item.id)
    return items


def _read_rows(path: Path) -> list[tuple[str, Any]]:
    if not path.is_file():
        raise ConfigurationError(f"items file not found: {path}")
    if path.suffix.lower() == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise ConfigurationError(
                f"{path}: reading Parquet needs pyarrow: {install_hint('parquet')}; or give JSONL"
            ) from exc
        try:
            table = pq.read_table(path).to_pylist()
        except Exception as exc:  # pyarrow's errors (ArrowInvalid, ...): a file it cannot read is not a batch
            raise ConfigurationError(
                f"{path} cannot be read as Parquet ({type(exc).__name__}: {str(exc)[:160]}); give a Parquet or "
                "JSONL items file"
            ) from None
        return [(f"row {n + 1}", row) for n, row in enumerate(table)]
    rows = []
    # Read as bytes, each line decoded inside the try: a byte that is not UTF-8 raised
    # UnicodeDecodeError out of the line iterator, and an integer past Python's digit limit
    # (ValueError) or nesting past the recursion limit (RecursionError) out of json.loads (round 26).
    with path.open("rb") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                rows.append((f"line {number}", json.loads(line.decode("utf-8-sig" if number == 1 else "utf-8"))))
            except UnicodeDecodeError as exc:
                raise ConfigurationError(
                    f"{path}:line {number} is not UTF-8 text (byte {exc.start + 1}); save the items file as UTF-8"
                ) from None
            except json.JSONDecodeError as exc:
                raise ConfigurationError(
                    f"{path}:line {number} is not JSON ({exc.msg}); one JSON object a line"
                ) from exc
            except (ValueError, RecursionError) as exc:  # a number past the digit limit, nesting too deep
                raise ConfigurationError(
                    f"{path}:line {number} cannot be read ({type(exc).__name__}: {str(exc)[:160]}); "
                    "give numbers as strings and keep values nested less deeply"
                ) from None
    return rows


def _item(row: Any, base: Path, where: str) -> BatchItem:
    if not isinstance(row, Mapping):
        raise ConfigurationError(f"{where}: an item is a JSON object with id, query and a context")
    # Parquet gives every column to every row: an empty cell is an absent field.
    row = {k: v for k, v in row.items() if v is not None}
    if not isinstance(row.get("id"), (str, int)) or isinstance(row.get("id"), bool) or row.get("id") == "":
        raise ConfigurationError(f"{where}: 'id' is missing (a string or an integer, unique in the batch)")
    if isinstance(row["id"], str) and utf8_text(row["id"]) != row["id"]:
        # A JSON escape such as "\ud800" gives a lone surrogate, which no file name, results row
        # or history can hold: one such id ended the whole batch after the items before it ran.
        raise ConfigurationError(
            f"{where}: 'id' {ascii(row['id'])[:80]} holds a lone surrogate: give the item a plain id"
        )
    if not isinstance(row.get("query"), str) or not row["query"].strip():
        raise ConfigurationError(f"{where}: 'query' is missing or empty")
    given = [name for name in CONTEXT_FIELDS if name in row]
    if len(given) != 1:
        raise ConfigurationError(
            f"{where}: give exactly one of context (inline text, list or dict), context_path (a file, a folder "
            f"or a list of them) or context_glob; got {', '.join(given) or 'none'}"
        )
    if "output" in row and not isinstance(row["output"], str):
        raise ConfigurationError(f'{where}: \'output\' is a type name such as "int" or "str"')
    settings = {k: v for k, v in row.items() if k not in ITEM_FIELDS}
    return BatchItem(
        id=str(row["id"]),
        query=row["query"],
        context=_context_spec(given[0], row[given[0]], base, where),
        settings=settings,
        output=row.get("output"),
        meta=row.get("meta"),
    )


def _context_spec(kind: str, value: Any, base: Path, where: str) -> ContextSpec:
    if kind == "context":
        if not isinstance(value, (str, list, dict)):
            raise ConfigurationError(f"{where}: inline 'context' is text, a list or a dict of documents")
        return ContextSpec("inline", value)
    if kind == "context_glob":
        if not isinstance(value, str):
            raise ConfigurationError(f"{where}: 'context_glob' is one pattern such as \"logs/**/*.log\"")
        return ContextSpec("glob", str(base / os.path.expanduser(value)))
    paths = [value] if isinstance(value, str) else value
    if not isinstance(paths, list) or not paths or not all(isinstance(p, str) for p in paths):
        raise ConfigurationError(f"{where}: 'context_path' is a path or a list of paths")
    return ContextSpec("paths", tuple(str(base / os.path.expanduser(p)) for p in paths))


def _relative(name: str, common: str) -> str:
    return os.path.relpath(name, common) if os.path.isabs(name) else name
