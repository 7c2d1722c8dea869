"""The size cap's message fits what was passed: a named file cannot be narrowed by globs or .gitignore."""

from __future__ import annotations

import pytest

from rlm.context_files import load_context
from rlm.errors import ContextError


def test_one_named_file_over_the_cap_gets_advice_for_a_file(tmp_path):
    huge = tmp_path / "huge.log"
    huge.write_text("x" * 100)
    with pytest.raises(ContextError) as raised:
        load_context([str(huge)], max_bytes=10)
    message = str(raised.value)
    assert "after 1 file (at " in message and "1 files" not in message
    assert "raise --max-bytes" in message
    assert "--include" not in message and ".gitignore" not in message


def test_a_folder_over_the_cap_keeps_the_folder_advice(tmp_path):
    (tmp_path / "logs").mkdir()
    for name in ("a.log", "b.log"):
        (tmp_path / "logs" / name).write_text("x" * 100)
    with pytest.raises(ContextError) as raised:
        load_context([str(tmp_path / "logs")], max_bytes=150)
    assert "after 2 files" in str(raised.value) and "--include/--exclude" in str(raised.value)


def test_the_loaded_line_counts_one_file_in_the_singular(tmp_path):
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "a.txt").write_text("abc")
    _, report = load_context([str(tmp_path / "one")])
    assert report.line() == "loaded 1 file, 3 bytes"
