"""Hints added to a step's observation: a NameError for a name an earlier failed step assigns
points at that step's error; an output of only the code's own text is said to show no data."""

from __future__ import annotations

from rlm import RLM
from rlm.engine.hints import own_text_hint, unset_name_hint
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


def test_an_output_of_only_the_codes_own_text_is_said_to_show_nothing_of_the_context(make_lm):
    lm, engine = make_lm([
        code("import re\nprint(re.search(r'WARN', context).group())"),  # the match of a literal: "WARN"
        code("line = [l for l in context.splitlines() if 'WARN' in l][0]\nprint(line)"),
        code("FINAL(line.split()[-1])"),
    ])  # fmt: skip
    result = RLM(model=lm).run("What is the code in the WARN line?", "INFO fine\nWARN the code is 4411\nINFO ok")
    assert result.answer == "4411"
    assert "holds only text your code wrote itself ('WARN')" in last_user_message(engine.calls[1])
    assert "text your code wrote" not in last_user_message(engine.calls[2])  # a line of the context


def test_own_text_is_only_what_every_printed_line_is():
    found = "if 'WARN' in context:\n    print('Found a WARN line.')"
    assert own_text_hint(found, "Found a WARN line.\n") is not None  # which branch ran, not the data
    assert own_text_hint("print(f'Found {n} lines')", "Found 3 lines\n") is None
    assert own_text_hint("print('count:', len(context))", "count: 12\n") is None
    assert own_text_hint("print(context[:5])", "hello\n") is None
    assert own_text_hint("x = (", "x\n") is None  # code that does not parse
    assert own_text_hint("print('a')", "") is None
