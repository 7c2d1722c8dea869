"""What the worker keeps of the model's objects (safe_values), and the class rules of the policy.

Checked in-process: the worker applies exactly these functions.
"""

from __future__ import annotations

import collections
import linecache

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rlm.sandbox.local.output import OutputBuffer
from rlm.sandbox.local.policy import WriteGuard, _type_builtin, compile_step, make_globals
from rlm.sandbox.local.safe_values import NotPlainData, describe_error, exact_str, plain, to_text

json_data = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


class Text(str):
    def startswith(self, prefix):  # a lie the worker must not rely on
        return False


class Mapping(dict):
    def items(self):
        raise AssertionError("items() of the model's class was called")


class Items(list):
    def __iter__(self):
        raise AssertionError("__iter__ of the model's class was called")


def exact_types(value):
    if type(value) is list:
        return all(exact_types(item) for item in value)
    if type(value) is dict:
        return all(type(k) is str and exact_types(v) for k, v in value.items())
    return value is None or type(value) in (str, int, float, bool)


@given(json_data)
def test_plain_data_is_copied_unchanged(value):
    assert plain(value) == value and exact_types(plain(value))


@given(json_data)
def test_subclassed_containers_are_read_without_their_methods(value):
    wrapped = Mapping(data=Items([Text("t"), value]))
    copy = plain(wrapped)
    assert copy == {"data": ["t", value]} and exact_types(copy)


def test_subclassed_scalars_become_exact_values():
    class Number(int):
        pass

    class Real(float):
        pass

    assert [type(x) for x in plain([Text("a"), Number(3), Real(1.5)])] == [str, int, float]
    assert type(exact_str(Text("a"))) is str


def test_other_objects_are_refused_or_turned_into_text_on_request():
    with pytest.raises(NotPlainData):
        plain({1, 2})
    assert plain([{1}], as_text=repr) == ["{1}"]
    cycle: list = []
    cycle.append(cycle)
    with pytest.raises(NotPlainData, match="nested"):
        plain(cycle)


def test_dict_keys_become_text_as_in_json():
    assert plain({2: "a", False: "b", None: "c", Text("k"): "d"}) == {"2": "a", "false": "b", "null": "c", "k": "d"}


def test_final_text_is_json_for_data_and_str_otherwise():
    assert to_text(collections.Counter("aab")) == '{"a": 2, "b": 1}'
    assert to_text((1, "x")) == '[1, "x"]'
    assert to_text({1, 2}) == "{1, 2}"
    assert type(to_text(Text("x"))) is str


def test_error_lines_come_from_the_step_source_and_never_from_linecache(monkeypatch):
    opened = []
    monkeypatch.setattr(linecache, "getline", lambda *a, **k: opened.append(a) or "")
    monkeypatch.setattr(linecache, "updatecache", lambda *a, **k: opened.append(a) or [])
    source = "x = 1\nraise ValueError('boom')"
    body, tail = compile_step(source)
    try:
        exec(body, make_globals({}))
    except ValueError as exc:
        text = describe_error(exc, source, (body, tail), 100)
    assert text == "ValueError: boom (at line 2: raise ValueError('boom'))"
    assert opened == []


def test_error_messages_are_clipped():
    text = describe_error(ValueError("x" * 10_000), "", (), 100)
    assert text.startswith("ValueError: " + "x" * 100) and "9900 characters cut" in text


def test_type_answers_classes_with_itself():
    assert _type_builtin(int) is _type_builtin
    assert _type_builtin(collections.Counter()) is collections.Counter
    with pytest.raises(TypeError):
        _type_builtin("X", (), {})


def test_class_statements_take_only_ordinary_bases():
    import fractions

    guard = WriteGuard()
    with pytest.raises(TypeError, match="ordinary classes"):
        guard.build_class(lambda: None, "F", fractions.Fraction, metaclass=type)
    with pytest.raises(TypeError, match="class keywords"):
        guard.build_class(lambda: None, "F", metaclass=type, flag=1)


def test_output_buffer_keeps_exact_text():
    buffer = OutputBuffer(100)
    buffer.write(Text("abc"))
    assert buffer.getvalue() == "abc" and type(buffer.head[0]) is str
