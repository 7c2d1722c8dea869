"""`.gitignore` lines and `--include`/`--exclude` globs: git's meaning, in time polynomial in pattern and path."""

from __future__ import annotations

import os
import time
import warnings

import pathspec
from hypothesis import given, settings
from hypothesis import strategies as st

from rlm.gitignore import Globs, IgnoreFile, parse_gitignore


def _ignored(lines: list[str], path: str, is_dir: bool = False) -> bool | None:
    rules = IgnoreFile(lines)
    state = rules.start()
    *folders, name = path.split("/")
    for folder in folders:
        state = rules.enter(state, folder)
    return rules.decides(state, name, is_dir)


def _globbed(patterns: list[str], path: str, is_dir: bool = False) -> bool:
    globs = Globs(patterns)
    state = globs.start()
    *folders, name = path.split("/")
    for folder in folders:
        state = globs.enter(state, folder)
    return globs.match(state, name, is_dir)


def test_lines_mean_what_git_means():
    assert _ignored(["*.log"], "a/b/run.log") is True
    assert _ignored(["*.log", "!keep.log"], "a/keep.log") is False  # the last matching line wins
    assert _ignored(["/build"], "build", is_dir=True) is True
    assert _ignored(["/build"], "src/build", is_dir=True) is None  # a leading / anchors to the folder
    assert _ignored(["doc/*.txt"], "doc/notes.txt") is True
    assert _ignored(["doc/*.txt"], "doc/server/notes.txt") is None  # `*` stays within a name
    assert _ignored(["**/foo"], "foo") is True and _ignored(["**/foo"], "a/b/foo") is True
    assert _ignored(["a/**/b"], "a/b") is True and _ignored(["a/**/b"], "a/x/y/b") is True
    assert _ignored(["abc/**"], "abc", is_dir=True) is None  # what is inside abc, not abc itself
    assert _ignored(["abc/**", "!abc/keep.md"], "abc/keep.md") is False
    assert _ignored(["build/"], "build") is None and _ignored(["build/"], "x/build", is_dir=True) is True
    assert _ignored(["\\#notes", "\\!bang"], "#notes") is True and _ignored(["\\!bang"], "!bang") is True
    assert _ignored(["# comment", "", "trail   "], "trail") is True  # trailing spaces go
    assert _ignored(["[a-c]?.md", "[!x]y"], "b1.md") is True and _ignored(["[!x]y"], "xy") is None


def test_globs_match_what_is_inside_a_matching_folder_as_pathspec_did():
    assert _globbed(["src/docs/"], "src/docs/guide.md")
    assert _globbed(["docs"], "a/docs/b/c.md")
    assert _globbed(["*.py"], "src/app.py") and not _globbed(["*.py"], "src/app.md")
    assert not _globbed(["docs", "!docs/keep.md"], "docs/keep.md")


_ATOMS = ["a", "b", "ab", "*", "?", "[ab]", "[!a]", "**", "*.t", "a*", "*b", "b?", "**a", "[]a]", "a\\*"]
_NAMES = ["a", "b", "ab", "ba", "x.t", "a.t", "bb", "a*"]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(_ATOMS), min_size=1, max_size=3),
    st.booleans(),
    st.booleans(),
    st.lists(st.sampled_from(_NAMES), min_size=1, max_size=4),
    st.booleans(),
)
def test_globs_agree_with_pathspec_but_for_a_trailing_globstar(atoms, anchored, dir_only, names, is_dir):
    pattern = ("/" if anchored else "") + "/".join(atoms) + ("/" if dir_only else "")
    if pattern.rstrip("/").endswith("/**"):
        return  # git: `abc/**` is what is inside abc; pathspec also matched abc/ and files in `abc/**/`
    path = "/".join(names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        expected = pathspec.PathSpec.from_lines("gitwildmatch", [pattern]).match_file(path + ("/" if is_dir else ""))
    assert _globbed([pattern], path, is_dir) == expected


def test_a_hostile_line_is_matched_in_time_polynomial_in_it():
    lines = ["*a" * 60 + "*b", "/" + "/**/a" * 40 + "/b", "[a-z]?" * 100 + "*"]
    started = time.monotonic()
    for name in ("a" * 255, "a" * 254 + "b"):
        _ignored(lines, name)
        _ignored(lines, "/".join(["a"] * 500 + [name]))
    assert time.monotonic() - started < 2


def test_classes_and_bytes_mean_what_wildmatch_means():
    assert _ignored(["key[[:digit:]].pem"], "key1.pem") and not _ignored(["key[[:digit:]].pem"], "keyx.pem")
    assert _ignored(["[[:upper:][:punct:]]*"], "-x") and _ignored(["x[[:space:]]"], "x\t")
    assert not _ignored(["x[[:space:]]"], "x\x0b")  # git's ctype: \v and \f are not space
    assert _ignored(["[z-a]"], "z") and not _ignored(["[z-a]"], "a")  # a reversed range adds nothing
    assert _ignored(["c[[:]"], "c:") and _ignored(["[]a]b"], "]b") and _ignored(["y[a-]"], "y-")
    assert not _ignored(["d[[:foo:]]"], "d1") and not _ignored(["d[[:foo:]]", "!x"], "x[")  # unknown class
    assert not _ignored(["a[b"], "a[b") and not _ignored(["a[b"], "ab")  # unclosed: the line matches nothing
    assert _ignored(["e[b/c]d"], "ebd")  # a `/` inside a class is no folder separator
    assert _ignored([b"geheim-\xe9.txt"], os.fsdecode(b"geheim-\xe9.txt"))  # bytes, as the file system's
    assert _ignored(["secret-??.txt"], "secret-\u00e9.txt")  # `?` is a byte: \u00e9 is two


def test_a_file_is_split_as_git_splits_it_and_parsed_within_its_budget():
    rules = parse_gitignore(b"\xef\xbb\xbfa.txt\r\nb.txt\x0c!a.txt\n# c\0\nd\0e\n", budget=100)
    assert rules is not None
    assert [rules.decides(rules.start(), name, False) for name in ("a.txt", "b.txt", "d", "d\0e")] == [
        True,
        None,
        True,
        None,
    ]
    assert parse_gitignore(b"".join(b"?%d\n" % index for index in range(100_000)), budget=1000) is None
    assert parse_gitignore(b"*[ab]" + b"[a]" * 600 + b"*\n", budget=1000) is None  # its regex's width costs
    started = time.monotonic()
    assert parse_gitignore(b"[" * 1_000_000, budget=1 << 30) is not None  # one pass: an unclosed `[` ends it
    assert parse_gitignore(b"[[:" * 300_000 + b"]", budget=1 << 30) is not None
    assert time.monotonic() - started < 2
