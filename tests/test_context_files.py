"""Reading a `--context` folder someone else made: symlinks, unreadable and special files, huge files, deep trees."""

from __future__ import annotations

import os
import sys

import pytest

import rlm.context_files as context_files
from rlm.context_files import load_context
from rlm.errors import ContextError


def _repo(tmp_path, files: dict[str, str]):
    root = tmp_path / "repo"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    root.mkdir(exist_ok=True)
    return root


def test_symlinks_in_a_folder_are_left_out_and_counted(tmp_path):
    (tmp_path / "secret").write_text("hunter2")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "b.txt").write_text("outside")
    root = _repo(tmp_path, {"a.txt": "inside", "sub/c.txt": "nested"})
    (root / "notes.md").symlink_to(tmp_path / "secret")
    (root / "inner.txt").symlink_to(root / "a.txt")  # even one pointing inside: not followed
    (root / "linked").symlink_to(tmp_path / "elsewhere")
    context, report = load_context([str(root)])
    assert context == {"repo/a.txt": "inside", "repo/sub/c.txt": "nested"}
    assert report.line() == "loaded 2 files, 12 bytes (left out: 3 symlinked)"


def test_a_symlink_named_outright_is_read(tmp_path):
    (tmp_path / "real.txt").write_text("mine")
    (tmp_path / "link.txt").symlink_to(tmp_path / "real.txt")
    assert load_context([str(tmp_path / "link.txt")])[0] == "mine"


def test_a_file_past_the_cap_is_refused_from_its_size_without_reading_it(tmp_path):
    huge = tmp_path / "huge.txt"
    with open(huge, "wb") as sparse:
        sparse.write(b"text\n" * 2000)  # text past the binary check's head
        sparse.truncate(1 << 40)  # a terabyte, no disk: reading it would end the host
    with pytest.raises(ContextError, match="1,099,511,627,776 bytes"):
        load_context([str(huge)], max_bytes=1000)
    root = _repo(tmp_path, {"a.txt": "x"})
    os.rename(huge, root / "huge.txt")
    with pytest.raises(ContextError, match=r"after 2 files .*--include/--exclude"):
        load_context([str(root)], max_bytes=1000)


def test_a_binary_file_is_told_from_its_head(tmp_path):
    root = _repo(tmp_path, {"a.txt": "text"})
    with open(root / "blob.bin", "wb") as blob:
        blob.write(b"\0" * 10)
        blob.truncate(1 << 40)
    context, report = load_context([str(root)], max_bytes=100)
    assert context == {"repo/a.txt": "text"} and report.skipped == {"binary": 1}


def test_unreadable_files_and_folders_are_left_out_and_counted(tmp_path, monkeypatch):
    root = _repo(tmp_path, {"a.txt": "kept", "b.txt": "locked", "locked/c.txt": "locked"})
    real_open, real_scandir = os.open, os.scandir

    def refusing_open(path, *args, **kwargs):
        if str(path).endswith("b.txt"):
            raise PermissionError(13, "Permission denied")
        return real_open(path, *args, **kwargs)

    def refusing_scandir(path="."):
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr(context_files.os, "open", refusing_open)  # root reads every file: pretend
    monkeypatch.setattr(context_files.os, "scandir", refusing_scandir)
    context, report = load_context([str(root)])
    assert context == {"repo/a.txt": "kept"}
    assert report.line() == "loaded 1 file, 4 bytes (left out: 2 unreadable)"
    with pytest.raises(ContextError, match=r"Cannot read context file .*b\.txt: Permission denied"):
        load_context([str(root / "b.txt")])
    with pytest.raises(ContextError, match=r"Cannot read the context folder .*locked: Permission denied"):
        load_context([str(root / "locked")])


def test_fifos_are_left_out_and_counted(tmp_path):
    root = _repo(tmp_path, {"a.txt": "text"})
    os.mkfifo(root / "pipe.txt")
    assert load_context([str(root)])[1].skipped == {"special": 1}


def test_a_tree_deeper_than_the_recursion_limit_is_read(tmp_path):
    folder = tmp_path / "repo"
    deepest = folder.joinpath(*["a"] * 150)
    deepest.mkdir(parents=True)
    (deepest / "x.txt").write_text("deep")
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(100)  # a shallow tree for pytest to clean up, deeper than the limit
    try:
        context = load_context([str(folder)])[0]
    finally:
        sys.setrecursionlimit(limit)
    assert list(context.values()) == ["deep"]


def test_nested_gitignores_override_their_parents_as_in_git(tmp_path):
    root = _repo(
        tmp_path,
        {
            ".gitignore": "*.log\n",
            "a.log": "x",
            "sub/.gitignore": "!keep.log\n",
            "sub/keep.log": "kept",
            "sub/b.log": "x",
        },
    )
    assert list(load_context([str(root)])[0]) == ["repo/sub/keep.log"]


def test_a_gitignore_too_big_to_apply_is_left_unapplied_and_said(tmp_path, monkeypatch):
    root = _repo(
        tmp_path, {".gitignore": "*.log\n" + "#\n" * 10, "a.log": "x", "sub/.gitignore": "b.txt\n", "sub/b.txt": "x"}
    )
    monkeypatch.setattr(context_files, "GITIGNORE_MAX_BYTES", 16)
    context, report = load_context([str(root)])
    assert sorted(context) == ["repo/a.log"]  # the root's was too big; sub's still applies
    assert report.skipped[".gitignore too big to apply"] == 1
