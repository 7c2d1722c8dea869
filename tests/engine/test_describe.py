"""The description of `context` the root model reads: its reading advice fits the context's shape."""

from __future__ import annotations

import re

from rlm.engine.describe import describe_context


def test_a_text_with_lines_is_read_by_whole_lines_in_code():
    text = describe_context("2024-01-01 INFO started\n" * 5000)
    assert "[line for line in context.splitlines() if word in line]" in text
    assert "only the text the pattern matched, not the line around it" in text
    assert text.count("2024-01-01 INFO started") < 40  # a sample, never the text


def test_a_text_without_lines_is_read_around_each_match():
    text = describe_context("word " * 50_000)
    assert "re.finditer(pattern, context)" in text and "splitlines" not in text


def test_the_advice_holds_no_search_word_to_copy():
    # Placeholders only: a real word in the advice resembles some task, and small models copy it.
    text = describe_context("alpha beta\n" * 1000).split("Start:")[0]
    assert re.search(r"""['"]\w+['"]""", text) is None


def test_documents_are_searched_all_at_once_with_their_names():
    lines = describe_context({"a.log": "x 1\ny 2\n" * 500, "b.log": "z\n"})
    assert "for name, text in context.items() for line in text.splitlines() if word in line]" in lines
    prose = describe_context(["one long paragraph " * 100, "another"])
    assert "for i, text in enumerate(context) for m in re.finditer(pattern, text)]" in prose
    assert "To find something" not in describe_context({"rows": [{"a": 1}]})  # structured: its shape says how
    assert "To find something" not in describe_context({"a.txt": "text\n", "rows": [{"a": 1}]})  # code would fail
