"""A NameError for a name an earlier failed step assigns points at that step's error."""

from __future__ import annotations

from rlm import RLM
from rlm.engine.hints import no_match_hint, not_indexable_hint, unset_name_hint
from rlm.engine.result import StepRecord
from tests.conftest import last_user_message


def code(src: str) -> str:
    return f"```python\n{src}\n```"


def test_the_step_that_failed_before_its_assignment_is_named(make_lm):
    lm, engine = make_lm([
        code("rows = [int(x) for x in ['1', '']]"),  # fails before `rows` is bound
        code("if not rows:\n    print('none')"),
        code("rows = [1]\nFINAL(len(rows))"),
    ])  # fmt: skip
    result = RLM(model=lm).run("q", "the context")
    assert result.answer == "1"
    seen = last_user_message(engine.calls[2])
    assert "NameError: name 'rows' is not defined" in seen
    assert "`rows` was never set: step 1 assigns it, but that step stopped with an error" in seen
    assert "ValueError: invalid literal for int()" in seen


def test_no_hint_when_the_name_was_set_or_never_assigned():
    failed = StepRecord(1, "", "total = 1 / 0", "", "ZeroDivisionError: division by zero")
    worked = StepRecord(2, "", "total = 5", "5", None)
    undefined = "NameError: name 'total' is not defined (at line 1: print(total))"
    assert unset_name_hint(undefined, [failed]) is not None
    assert unset_name_hint(undefined, [failed, worked]) is None  # the latest assignment ran
    assert unset_name_hint("NameError: name 'other' is not defined", [failed]) is None
    assert unset_name_hint("ValueError: bad", [failed]) is None
    assert unset_name_hint(None, [failed]) is None


def test_a_search_that_found_nothing_is_named_where_the_error_says_nonetype(make_lm):
    lm, engine = make_lm([
        code("found = re.search(r'absent', context).group()"),
        code("FINAL(str(len(context)))"),
    ])  # fmt: skip
    result = RLM(model=lm).run("q", "the context")
    assert result.answer == "11"
    seen = last_user_message(engine.calls[1])
    assert "'NoneType' object has no attribute 'group'" in seen
    assert "that pattern does not occur in the text you searched. Print context to see" in seen


def test_no_match_hint_only_for_a_match_method_on_none():
    assert ".span() failed" in (no_match_hint("AttributeError: 'NoneType' object has no attribute 'span'") or "")
    assert no_match_hint("AttributeError: 'NoneType' object has no attribute 'split'") is None
    assert no_match_hint("AttributeError: 'str' object has no attribute 'group'") is None
    assert no_match_hint(None) is None


def test_no_match_hint_names_the_searched_text_as_the_failing_line_wrote_it():
    none_has = "AttributeError: 'NoneType' object has no attribute 'group'"
    error = f"{none_has} (at line 2: code = re.search(r'x: (\\d+)', rows[0]).group(1))"
    assert "Print rows[0] to see what it holds" in (no_match_hint(error) or "")
    unclear = f"{none_has} (at line 1: a = re.search(p, x).group() + re.match(p, y).group())"
    assert "Print the text you searched" in (no_match_hint(unclear) or "")
    compiled = f"{none_has} (at line 1: code = pattern.search(rows[0], 5).group())"
    assert "Print rows[0] to see" in (no_match_hint(compiled) or "")
    in_a_loop = f"{none_has} (at line 1: codes = [re.search(p, line).group() for line in rows])"
    assert "Print the text you searched" in (no_match_hint(in_a_loop) or "")
    clipped = f"{none_has} (at line 1: a = re.search(p, x…)"
    assert "Print the text you searched" in (no_match_hint(clipped) or "")
    hostile = f"{none_has} (at line 1: re.search(p, {'-' * 100_000}1))"  # a worker past the policy writes any text
    assert "Print the text you searched" in (no_match_hint(hostile) or "")


def test_a_slice_of_a_dicts_items_is_answered_with_the_list_that_has_one(make_lm):
    lm, engine = make_lm([
        code("for name, text in context.items()[:1]:\n    print(name)"),
        code("FINAL(list(context)[0])"),
    ])  # fmt: skip
    result = RLM(model=lm).run("q", {"a.txt": "alpha", "b.txt": "beta"})
    assert result.answer == "a.txt"
    seen = last_user_message(engine.calls[1])
    assert "'dict_items' object is not subscriptable" in seen
    assert "Make a list of it first: list(context.items())[:1]." in seen


def test_not_indexable_hint_only_for_views_and_iterators():
    not_subscriptable = "TypeError: '{}' object is not subscriptable (at line 1: {})"
    found = not_indexable_hint(not_subscriptable.format("callable_iterator", "m = re.finditer(p, context)[0]"))
    assert "list(re.finditer(p, context))[0]" in (found or "")
    generic = not_indexable_hint(not_subscriptable.format("map", "x = m[0]"))  # which call made it is not written
    assert "list(...) around it" in (generic or "")
    two = not_indexable_hint(not_subscriptable.format("zip", "x = zip(a, b)[0] + map(f, c)[0]"))
    assert "list(...) around it" in (two or "")
    assert not_indexable_hint(not_subscriptable.format("int", "x = 5[0]")) is None  # not a view: another mistake
    assert not_indexable_hint(not_subscriptable.format("str_ascii_iterator", "iter(s)[0]")) is not None
    assert not_indexable_hint("TypeError: 'dict_items' object is not subscriptable") is not None  # no line quoted
    assert not_indexable_hint(not_subscriptable.format("dict_keys", f"x = d.keys()[{'(' * 10_000}")) is not None
    assert not_indexable_hint(None) is None
