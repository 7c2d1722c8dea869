"""The RestrictedPython policy, checked in-process (the worker applies exactly this policy)."""

from __future__ import annotations

import pytest

from rlm.sandbox.local.output import OutputBuffer, PrintCollector
from rlm.sandbox.local.policy import (
    READY_MODULES,
    ModuleFacade,
    PolicyError,
    compile_step,
    guarded_import,
    make_globals,
)


def run(code: str, namespace: dict | None = None) -> tuple[dict, str]:
    namespace = namespace if namespace is not None else make_globals({})
    buffer = OutputBuffer(1000)
    PrintCollector.buffer = buffer
    try:
        body, tail = compile_step(code)
        exec(body, namespace)
        if tail is not None:
            value = eval(tail, namespace)
            if value is not None:
                buffer.write(repr(value))
    finally:
        PrintCollector.buffer = None
    return namespace, buffer.getvalue()


def test_prints_and_trailing_expressions_are_captured():
    _, out = run("print('a', 1)\nx = [1, 2]\nx + [3]")
    assert out == "a 1\n[1, 2, 3]"


def test_classes_the_code_defines_can_hold_attributes():
    _, out = run("class Box:\n    def __init__(self, v):\n        self.v = v\nBox(5).v")
    assert out == "5"


def test_foreign_objects_cannot_be_modified():
    with pytest.raises(TypeError, match="cannot modify attributes"):
        run("import re\npattern = re.compile('a')\npattern.flags = 3")


def test_augmented_assignment_and_unpacking_work():
    _, out = run("t = 1\nt += 2\na, (b, c) = 1, (2, 3)\nfor i, j in [(1, 2)]:\n    t += i * j\n(t, a + b + c)")
    assert out == "(5, 6)"


def test_the_modules_the_instructions_name_are_ready_without_an_import():
    _, out = run(
        "c = collections.Counter('abca')\nprint(c.most_common(1), re.findall('a', 'banana'), 'mean' in dir(statistics))"
    )
    assert out == "[('a', 2)] ['a', 'a', 'a'] True\n"
    _, out = run("import collections\ncollections.Counter('xx')['x']")  # an import still works
    assert out == "2"
    with pytest.raises(AttributeError, match="offers no attribute"):
        run("statistics.sys")  # the same facade as an import: only its listed names
    with pytest.raises(TypeError, match="cannot modify"):
        run("json.loads = None")


@pytest.mark.parametrize("name", ["_" + "strptime", "os", "sys"])
def test_the_ready_modules_class_names_no_other_module(name):
    # type(re) hands the class to the code; datetime's C code is served the real _strptime module
    with pytest.raises(ImportError, match="not one of the modules bound"):
        run(f"type(re)({name!r})")


def test_the_instructions_name_exactly_the_ready_modules():
    from rlm.engine.prompts import INSTRUCTIONS
    from rlm.sandbox.e2b.bridge import prelude

    line = next(line for line in INSTRUCTIONS.splitlines() if line.startswith("- Modules to import:"))
    named = line.removeprefix("- Modules to import:").split(".")[0]
    assert tuple(name.strip() for name in named.split(",")) == READY_MODULES
    assert f"import {', '.join(READY_MODULES)}\n" in prelude("/tmp/x")  # E2B binds the same ones


def test_augmented_assignment_to_items_and_attributes_works_as_in_python():
    _, out = run("c = collections.Counter()\nfor w in 'abca':\n    c[w] += 1\nc")
    assert out == "Counter({'a': 2, 'b': 1, 'c': 1})"
    _, out = run("d = {'x': {'y': 1}}\nd['x']['y'] += 2\nn = [1]\nn[0] *= 5\n(d, n)")
    assert out == "({'x': {'y': 3}}, [5])"
    _, out = run("class Tally:\n    def __init__(self):\n        self.n = 0\nt = Tally()\nt.n += 3\nt.n")
    assert out == "3"
    # the container and the key are evaluated once, as in Python
    _, out = run("keys = iter(['a', 'b'])\nd = {'a': 1, 'b': 10}\nd[next(keys)] += 1\n(d, next(keys))")
    assert out == "({'a': 2, 'b': 10}, 'b')"


@pytest.mark.parametrize(
    ("code", "refusal"),
    [
        ("p = re.compile('a')\np.flags += 1", "cannot modify attributes of Pattern"),  # the write guard, as for `=`
        ("t = (1,)\nt[0] += 1", "cannot modify"),
        ("json.loads += 1", "cannot modify"),
        ("d = {}\nd.__class__ += 1", "invalid attribute name"),
        ("x = [1, 2]\nx[0:1] += [3]", "Augmented assignment of object items and slices"),  # slices stay refused
    ],
)
def test_augmented_assignment_keeps_the_guards_of_plain_assignment(code, refusal):
    with pytest.raises((TypeError, PolicyError), match=refusal):
        run(code)


def test_facades_expose_only_listed_names():
    facade = guarded_import("re")
    assert isinstance(facade, ModuleFacade)
    assert "findall" in dir(facade)
    with pytest.raises(AttributeError, match="offers no attribute"):
        facade.enum  # noqa: B018
    with pytest.raises(AttributeError, match="read-only"):
        facade.findall = None


def test_every_facade_holds_no_modules():
    from rlm.sandbox.local.policy import SAFE_MODULES

    for name in SAFE_MODULES:
        facade = guarded_import(name)
        for attr in dir(facade):
            assert type(getattr(facade, attr)).__name__ != "module", f"{name}.{attr}"


@pytest.mark.parametrize(
    "code",
    ["x.__class__", "_private = 1", "def f():\n    return g.gi_frame", "import os as _o", "exec('1')"],
)
def test_compile_time_violations_are_refused(code):
    with pytest.raises((PolicyError, NameError)):
        run(code)


def test_type_offers_only_the_one_argument_form():
    _, out = run("type([]) is list")
    assert out == "True"
    with pytest.raises(TypeError):
        run("type('X', (), {})")


def test_output_buffer_keeps_head_and_tail():
    buffer = OutputBuffer(10)
    for _ in range(1000):
        buffer.write("0123456789")
    text = buffer.getvalue()
    assert text.startswith("0123456789") and text.endswith("0123456789") and "9980 characters cut" in text
