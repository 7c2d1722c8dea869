"""When an answer counts as founded on what the code showed (engine/grounding.py), and the loop's use of it."""

from __future__ import annotations

import pytest

from rlm import RLM
from rlm.engine.describe import describe_context
from rlm.engine.grounding import Grounding, code_literals
from tests.conftest import last_user_message

BIG = "filler text. " * 5000 + "The magic number is 4817. " + "more filler. " * 2000


def code(src: str) -> str:
    return f"Let me run this.\n```python\n{src}\n```"


def grounding_after(*outputs: str, query: str = "q") -> Grounding:
    seen = Grounding(query)
    for step, output in enumerate(outputs, start=1):
        seen.saw(step, "print(x)", output)
    return seen


@pytest.mark.parametrize(
    ("answer", "output"),
    [
        ("80", "The context holds 4,698,280 characters"),  # a digit run inside a bigger number
        ("280", "4,698,280"),
        ("3", "version 3.5"),
        ("3", "python 3.10.2"),
        ("05", "2024-05-02"),
        ("12", "user_12 and x12"),
        ("bill", "billing: 30"),
    ],
)
def test_a_value_inside_a_longer_value_is_not_shown(answer, output):
    assert grounding_after(output).unfounded(answer, literal=True, step=2)


@pytest.mark.parametrize(
    ("answer", "output"),
    [
        ("4698280", "4,698,280 characters"),  # numbers compare by value
        ("1,234", "[1234, 7]"),
        ("2", "counts: 1,2,3"),
        ("3.5", "mean 3.5"),
        ("Billing", "[('billing', 120), ('refund', 80)]"),  # case does not matter for words
        ("fnmatch.py", "found in 'fnmatch.py'"),
        ("The most frequent label is billing.", "billing 120\nrefund 80"),  # its key word was shown
        ("There are 120 billing records", "billing 120"),
    ],
)
def test_a_value_shown_whole_by_an_output_is_founded(answer, output):
    query = "Which label is the most frequent, and how many records have it?"
    assert not grounding_after(output, query=query).unfounded(answer, literal=True, step=2)


def test_nothing_typed_is_founded_before_any_output_and_computed_answers_always_are():
    seen = Grounding("q")
    assert seen.unfounded("42", literal=True, step=1)
    assert not seen.unfounded("42", literal=False, step=1)
    assert not Grounding("q", enabled=False).unfounded("42", literal=True, step=1)


def test_what_a_step_prints_of_its_own_constants_is_no_evidence_in_that_step():
    seen = Grounding("q")
    seen.saw(2, 'print("80")', "80")
    assert seen.unfounded("80", literal=True, step=2)
    assert not seen.unfounded("80", literal=True, step=3)  # later it is: the model read it


def test_prose_after_the_first_step_is_checked_for_its_numbers_only():
    seen = grounding_after("lines: 120")
    prose = "The log shows a steady service with a few slow requests in the afternoon, " * 2
    assert not seen.unfounded(prose, literal=True, step=2)
    assert seen.unfounded(prose + "There were 75 of them.", literal=True, step=2)
    assert seen.unfounded(prose, literal=True, step=1)


def literal(*steps: str) -> bool:
    """Whether the FINAL of the last of these steps' code hands over a constant the model typed."""
    seen = Grounding("q")
    for step, code in enumerate(steps, start=1):
        seen.saw(step, code, "")
    return seen.final_is_literal(steps[-1])


def test_a_final_is_literal_when_the_model_typed_its_value():
    assert literal('FINAL("80")')
    assert literal("FINAL(80)")
    assert literal("FINAL(40 * 2)")
    assert literal("FINAL(str(80))")
    assert literal('FINAL("%d" % 80)')
    assert literal('answer = "80"\nFINAL(answer)')
    assert literal('answer = "80"\nFINAL_VAR("answer")')
    assert literal('answer = "80"', "FINAL(answer)")  # typed in one step, handed over in the next
    assert code_literals("print(context[:80])\nx = 'a'") == {"a"}


def test_a_final_is_computed_when_code_made_or_changed_its_value():
    assert not literal("n = len(context)\nFINAL(n)")
    assert not literal('FINAL(f"{n} records")')
    assert not literal("FINAL(str(sum(counts.values())))")
    assert not literal("count = 0\nfor line in context.splitlines():\n    count += 1\nFINAL(count)")
    assert not literal("best = None\nfor k in d:\n    best = k\nFINAL(best)")
    assert not literal('x = "80"', "x = len(context)", "FINAL(x)")


def test_common_right_answers_of_a_strong_model_are_founded():
    seen = grounding_after("True", "spam lines: 167\nratio 0.3336", query="How many of the first 500 lines are spam?")
    assert not seen.unfounded("Yes", literal=True, step=3)
    assert not seen.unfounded("33.4%", literal=True, step=3)  # the answer's own rounding
    assert not seen.unfounded("167 of the first 500 lines are spam", literal=True, step=3)  # 500 is the query's
    assert seen.unfounded("500", literal=True, step=3)  # but never as the bare answer
    assert seen.unfounded("80", literal=True, step=3)  # 0.8 is not 80: only a percentage reads a fraction
    prose = "The three users who wrote most are listed above; they account for 167 lines, " * 2 + "the top 3."
    assert not seen.unfounded(prose, literal=True, step=3)  # most of its numbers were shown


def test_engine_text_in_an_answer_is_accepted_when_the_context_holds_it():
    seen = grounding_after("Step 1 of 4: download the installer.")
    markers = ("Step 1 of ", "(nothing printed)")
    assert not seen.engine_text("Step 1 of 4: download the installer.", markers)
    assert seen.engine_text("(nothing printed)", markers)


def test_the_description_of_the_context_is_not_evidence(make_lm):
    # 4,698,280-like figures and the preview are in the task message, never in an output
    lm, engine = make_lm([code("print(len(context))") + "\nFINAL('filler')", code("FINAL('filler')"), "FINAL('x')"])
    result = RLM(model=lm, max_iterations=2).run("What word starts the context?", BIG)
    assert "a quote is not an output of your code" in last_user_message(engine.calls[1])
    assert (result.answer, result.finish_reason) == ("", "unfounded")
    assert result.trajectory[-1].reply == "FINAL('x')"  # the last reply is kept, after the steps
    assert result.iterations == len(result.trajectory) - 1


def test_an_answer_only_the_preview_shows_is_refused_with_the_code_that_prints_that_part(make_lm):
    context = "filler text. " * 3000 + "The code word is heliotrope."
    lm, engine = make_lm(
        [code("x = 1") + "\nFINAL('heliotrope')", code("print(context[-300:])"), "FINAL('heliotrope')"]
    )
    result = RLM(model=lm, max_iterations=3).run("What is the code word?", context)
    assert "print(context[-300:])" in last_user_message(engine.calls[1])
    assert (result.answer, result.finish_reason) == ("heliotrope", "final")


def test_an_empty_final_is_no_answer(make_lm):
    # a FINAL of an empty variable (sub-calls that returned "") read as a finished run before
    lm, engine = make_lm([code("found = ''\nFINAL(found)"), code("FINAL('   ')"), "FINAL('')"])
    result = RLM(model=lm, max_iterations=2).run("Where does she live?", BIG)
    assert "it is empty" in last_user_message(engine.calls[1])
    assert (result.answer, result.finish_reason) == ("", "no_answer")


def test_a_budget_that_ran_out_stays_the_reason_when_the_last_reply_has_no_answer(make_lm):
    lm, _ = make_lm([code("x = 1"), code("y = 2"), "I am not sure."])
    result = RLM(model=lm, max_llm_calls=3).run("q", BIG)
    assert (result.answer, result.finish_reason) == ("", "budget")


def test_engine_text_is_refused_as_an_answer(make_lm):
    lm, engine = make_lm([code("x = 1"), "FINAL('(nothing printed)')", code("FINAL(str(len(context)))")])
    result = RLM(model=lm).run("How long is the context?", BIG)
    assert "the REPL's own text" in last_user_message(engine.calls[2])
    assert result.answer == str(len(BIG))


def test_a_child_without_an_answer_tells_its_parent_so(make_lm):
    parent = code("r = recursive_llm('find it', context[:2000])\nprint(r)")
    child = [code("x = 1"), "I could not find it."]  # max_iterations=1: one step, then answer-now
    lm, _ = make_lm([parent, *child, code("FINAL_VAR('r')")])
    result = RLM(model=lm, max_iterations=1).run("q", BIG)
    assert result.trajectory[0].output.startswith("[no answer: the model's last reply gave no FINAL answer")
    # and the parent cannot hand that note on as its own answer
    assert (result.answer, result.finish_reason) == ("", "no_answer")


def test_a_repeated_failing_step_is_told_to_change_the_code(make_lm):
    lm, engine = make_lm([code("1/0"), code("1/0"), code("FINAL(str(len(context)))")])
    RLM(model=lm).run("q", BIG)
    note = last_user_message(engine.calls[2])
    assert "failed the same way" in note and "Use that result" not in note


def test_a_dict_context_is_described_with_how_to_read_its_documents():
    text = describe_context({"a.py": "import os\n", "b.py": "x = 1\n"})
    assert "list(context)" in text and "print(context['a.py'][:1000])" in text
    assert "context[:" not in text  # slicing a dict fails: never advised
    nested = describe_context([{"user": 1, "text": "hi"}])
    assert "dict with 2 keys ['user', 'text']" in nested and "print(list(context[0]))" in nested
