"""Reading a `--context` folder someone else made: symlinks, unreadable and special files, huge files, deep trees."""

from __future__ import annotations

import os
import sys

import pytest

import rlm.context_folder as context_folder
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
    real_open = os.open

    def refusing_open(path, *args, **kwargs):  # files and folders are opened by name, relative to their folder
        if str(path).endswith(("b.txt", "locked")):
            raise PermissionError(13, "Permission denied")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing_open)  # root reads every file: pretend
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


def test_a_gitignore_that_cannot_be_applied_refuses_its_folder_and_names_the_fix(tmp_path, monkeypatch):
    root = _repo(tmp_path, {"a.txt": "x", "sub/.gitignore": "b.txt\n" + "#\n" * 10, "sub/b.txt": "x"})
    monkeypatch.setattr(context_folder, "GITIGNORE_MAX_BYTES", 16)  # the folder walk reads it
    with pytest.raises(ContextError, match=r"Cannot apply sub/\.gitignore .*past 16 bytes.*--exclude '/sub/'"):
        load_context([str(root)])  # fail closed: leaving it unapplied would let b.txt in
    assert list(load_context([str(root)], exclude=["/sub/"])[0]) == ["repo/a.txt"]
    monkeypatch.setattr(context_folder, "GITIGNORE_MAX_WORK", 3)  # the work in force: each file's and its parents'
    root.joinpath(".gitignore").write_text("*.log\n")
    root.joinpath("sub/.gitignore").write_text("b.txt\n")
    with pytest.raises(ContextError, match=r"Cannot apply sub/\.gitignore .*matching work"):
        load_context([str(root)])


def test_names_count_against_the_cap_while_walking(tmp_path, monkeypatch):
    root = _repo(tmp_path, {f"{index:03d}.txt": "" for index in range(100)})
    with pytest.raises(ContextError, match=r"cap after 9 files"):
        load_context([str(root)], max_bytes=100)  # "repo/000.txt" is 12 bytes the context holds
    context, report = load_context([str(root)], max_bytes=1200)
    assert len(context) == 100 and report.line() == "loaded 100 files, 0 bytes"  # the line counts text


def test_stdin_is_read_up_to_the_cap_and_decoded_as_files_are(monkeypatch):
    import io

    for data in (b"x" * 1001, b"y" * 10_000_000):
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
        with pytest.raises(ContextError, match="1,000-byte cap"):
            load_context(["-"], max_bytes=1000)
        assert sys.stdin.buffer.tell() <= 1001  # read no further than the cap + 1
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"z" * 100_000)))
    with pytest.raises(ContextError, match="5-byte cap"):
        load_context(["-", "missing.txt"], max_bytes=5)  # the name "<stdin>" alone passes it: read one byte
    assert sys.stdin.buffer.tell() == 1
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"caf\xe9\0")))
    assert load_context(["-"])[0] == "caf\ufffd\0"


def test_a_clones_own_info_exclude_applies_below_its_gitignore(tmp_path):
    root = _repo(
        tmp_path,
        {
            ".git/info/exclude": "# git's comments\n*.json\nsub/local.txt\n",
            ".gitignore": "!keep.json\n",  # a .gitignore outranks info/exclude, as in git
            "creds.json": "k",
            "keep.json": "{}",
            "sub/local.txt": "k",
            "sub/.git/info/exclude": "*\n",  # a nested clone's: not the named folder's, not read
            "sub/a.txt": "x",
        },
    )
    assert list(load_context([str(root)])[0]) == ["repo/keep.json", "repo/sub/a.txt"]


def test_a_repositorys_ignore_files_above_the_named_folder_apply_unless_they_ignore_it_whole(tmp_path):
    repo = tmp_path / "repo"
    (repo / ".git" / "info").mkdir(parents=True)
    (repo / ".git" / "info" / "exclude").write_text("local.txt\n")
    (repo / ".gitignore").write_text("*.secret\nbuild/\n")
    (repo / "config" / "sub").mkdir(parents=True)
    (repo / "config" / ".gitignore").write_text("!kept.secret\n")
    for name in ("app.yml", "db.secret", "kept.secret", "local.txt", "sub/deep.secret"):
        (repo / "config" / name).write_text("x")
    context, _ = load_context([str(repo / "config")])
    assert sorted(context) == ["config/app.yml", "config/kept.secret"]
    # A folder the repository ignores as a whole is the user's to name: read by its own rules.
    (repo / "build").mkdir()
    (repo / "build" / "out.txt").write_text("x")
    assert sorted(load_context([str(repo / "build")])[0]) == ["build/out.txt"]
