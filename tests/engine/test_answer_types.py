"""Typed answers: `run(query, context, output=T)` tells the model the shape, refuses a FINAL value
that does not fit (the model reads why), and returns the validated value as `RLMResult.value`."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from rlm import RLM, ConfigurationError
from rlm.engine.answer_types import AnswerType
from tests.conftest import last_user_message


def code(src: str) -> str:
    return f"Running this.\n```python\n{src}\n```"


@dataclass
class Person:
    name: str
    age: int


class Report(BaseModel):
    title: str
    tags: list[str]


def test_a_value_that_does_not_fit_is_refused_then_the_fitting_one_returned(make_lm):
    lm, engine = make_lm([code("n = len(context)\nFINAL('about ' + str(n))"), code("FINAL(len(context))")])
    result = RLM(model=lm).run("How long?", "0123456789", output=int)
    assert (result.value, result.answer, result.finish_reason) == (10, "10", "final")
    first_prompt, second_prompt = engine.calls[0][-1]["content"], last_user_message(engine.calls[1])
    assert "must be a value of type int" in first_prompt
    assert "does not fit the expected type int" in second_prompt and "Fix the value" in second_prompt


@pytest.mark.parametrize(
    ("spec", "final", "value"),
    [
        (list[str], "FINAL(['a', 'b'])", ["a", "b"]),
        (dict[str, int], "FINAL({'a': 1})", {"a": 1}),
        (bool, "FINAL(True)", True),
        (float, "FINAL('2.5')", 2.5),
        (Person, "FINAL({'name': 'Ada', 'age': 36})", Person("Ada", 36)),
        (Report, "FINAL({'title': 't', 'tags': []})", Report(title="t", tags=[])),
    ],
    ids=["list", "dict", "bool", "float-from-text", "dataclass", "pydantic"],
)
def test_builtin_dataclass_and_pydantic_answers(make_lm, spec, final, value):
    lm, _ = make_lm([code(f"x = len(context)\n{final}")])
    result = RLM(model=lm).run("q", "0123456789", output=spec)
    assert result.value == value


def test_a_dspy_field_list_gives_an_object_with_those_fields(make_lm):
    lm, _ = make_lm([code("FINAL({'count': len(context), 'names': ['x']})")])
    result = RLM(model=lm).run("q", "0123456789", output="count: int, names: list[str]")
    assert (result.value.count, result.value.names) == (10, ["x"])


def test_completion_still_returns_text(make_lm):
    lm, _ = make_lm([code("FINAL(len(context))")])
    assert RLM(model=lm).completion("q", "0123456789") == "10"


def test_an_answer_that_never_fits_leaves_value_none(make_lm):
    lm, _ = make_lm([code("FINAL('x' + context)")] * 2 + ["FINAL(still text)"])
    result = RLM(model=lm, max_iterations=2).run("q", "abc", output=int)
    assert result.value is None and result.answer == "still text"


def test_an_unusable_output_type_is_a_configuration_error(make_lm):
    lm, _ = make_lm([])
    with pytest.raises(ConfigurationError, match="not a type recursive-llm can validate"):
        RLM(model=lm).run("q", "abc", output=object())


@given(st.lists(st.text(max_size=5), max_size=5))
def test_any_list_of_text_survives_the_round_trip_through_final_text(values):
    import json

    assert AnswerType(list[str]).parse(json.dumps(values)) == values


@pytest.mark.parametrize("text", ["{[1]: 2}", "[" * 100_000, "{'a': set()}", "\x00"])
def test_any_text_gives_a_refusal_never_an_exception(text):
    assert AnswerType(int).refusal(text) is not None


@pytest.mark.parametrize(
    ("spec", "answer"),
    [
        (float, "nan"),
        (float, "inf"),
        (float, "-Infinity"),
        (list[float], "[1.0, NaN]"),
        (dict[str, float], '{"a": Infinity}'),
    ],
)
def test_nan_and_infinity_are_refused_as_answers(spec, answer):
    # They validate as floats, but mean no answer, and strict JSON (a batch row, --json) cannot hold them.
    refusal = AnswerType(spec).refusal(answer)
    assert refusal is not None and "finite" in refusal


def test_a_finite_float_still_fits():
    assert AnswerType(float).refusal("1e308") is None and AnswerType(list[float]).parse("[0.5, -2]") == [0.5, -2.0]
