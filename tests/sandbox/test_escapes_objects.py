"""Escape attempts through objects the model's code makes and hands back to the worker.

The worker's trusted code must never run a method of the model's after the step's timer is
off, nor rely on one at any time: classes with dunder methods of the model's choosing cannot be
built (no real `type`, no metaclass), and whatever reaches FINAL, SUBMIT, llm_query, tools, the
trailing expression or the error report is copied to exact built-in types first. Every hostile
method here either records that it ran (`seen`) or spins forever (`spin`): run outside the timer it
would hang the worker until the host kills it, which the tests see as a restart.
"""

from __future__ import annotations

import json
import time

import pytest

from rlm.sandbox.base import SandboxLimits
from rlm.sandbox.local import LocalSandbox

TIMEOUT = 0.5

SETUP = """
seen = []
kept = 'still here'
def spin(*args, **kwargs):
    while True:
        pass
def record(*args, **kwargs):
    seen.append(1)
    return False
"""


@pytest.fixture(scope="module")
def sandbox():
    box = LocalSandbox(SandboxLimits(exec_timeout=TIMEOUT, memory_limit_mb=256, max_output_chars=2000))
    box.start()
    box.load("the context")
    box.define_tools(["lookup"], submit_fields=["answer"])
    yield box
    box.close()


@pytest.fixture
def fresh(sandbox):
    """The shared sandbox, with `seen`, `kept`, `spin` and `record` (re)defined."""
    result = sandbox.execute(SETUP, refuse_calls)
    assert result.error is None, result.error
    return sandbox


def refuse_calls(fn, args, kwargs):
    raise AssertionError(f"unexpected host call {fn}")


class Host:
    """A handler that answers like the engine would and keeps what arrived."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list, dict]] = []

    def __call__(self, fn, args, kwargs):
        self.calls.append((fn, args, kwargs))
        if fn.endswith("_batched"):
            return ["ok"] * len(args[0])
        return "ok"


def assert_plain(value, depth=0):
    """Only exact JSON types reached the host."""
    assert depth < 50
    assert value is None or type(value) in (str, int, float, bool, list, dict), type(value)
    if type(value) is list:
        for item in value:
            assert_plain(item, depth + 1)
    if type(value) is dict:
        for key, item in value.items():
            assert type(key) is str
            assert_plain(item, depth + 1)


def run(sandbox, code, handler=refuse_calls):
    started = time.perf_counter()
    result = sandbox.execute(code, handler)
    elapsed = time.perf_counter() - started
    assert not result.restarted, f"the worker hung or died: {result.error}"
    assert elapsed < TIMEOUT + 0.8, elapsed
    assert result.error is None or type(result.error) is str
    assert result.final_answer is None or type(result.final_answer) is str
    assert_plain(result.submitted)
    json.dumps([result.output, result.error, result.final_answer, result.submitted])
    return result


def assert_untouched(sandbox):
    """No hostile method ran, and the session (with its variables) is still the same one."""
    assert sandbox.execute("len(seen), kept", refuse_calls).output == "(0, 'still here')\n"


# --- 1. Building classes whose dunder methods the model chooses ---------------------------------
FORGING = {
    "type-of-type-three-args": "type(type(1))('X', (), {})",
    "type-of-int-builds-exception": "type(int)('X', (Exception,), {'__str__': spin})",
    "type-of-own-class-builds-subclass": "class A:\n    pass\ntype(A)('B', (A,), {'__del__': spin})",
    "abcmeta-from-fraction": "import fractions\ntype(fractions.Fraction)('X', (), {'__repr__': spin})",
    "fraction-base-brings-abcmeta": "import fractions\nclass F(fractions.Fraction):\n    pass",
    "namedtuple-metaclass": (
        "import collections\nP = collections.namedtuple('P', 'x')\ntype(P)('Q', (P,), {'__repr__': spin})"
    ),
    "subclass-type-as-metaclass": "class M(type(type(1))):\n    pass",
    "subclass-real-type-name": "class M(type):\n    pass",
    "instance-as-base": "class X(1):\n    pass",
    "function-as-base": "class X(spin):\n    pass",
    "function-type-constructor": "type(spin)('X', (), {})",
    "metaclass-keyword": "class X(metaclass=type):\n    pass",
    "dunder-metaclass-global": "__metaclass__",
    "build-class-builtin": "__build_class__(spin, 'X')",
    "guard-rebound-in-class-body": "class X:\n    _getattr_ = spin",
    "def-str": "class E(Exception):\n    def __str__(self):\n        return spin()",
    "def-repr": "class E:\n    def __repr__(self):\n        return spin()",
    "def-del": "class E:\n    def __del__(self):\n        spin()",
    "def-hash": "class S(str):\n    def __hash__(self):\n        return spin()",
    "def-getattribute": "class E:\n    def __getattribute__(self, name):\n        return spin()",
    "def-getattr": "class E:\n    def __getattr__(self, name):\n        return spin()",
    "def-prepare": "class M:\n    def __prepare__(name, bases):\n        return {}",
    "def-init-subclass": "class A:\n    def __init_subclass__(cls):\n        spin()",
    "def-set-name": "class D:\n    def __set_name__(self, owner, name):\n        spin()",
    "def-class-getitem": "class A:\n    def __class_getitem__(cls, item):\n        spin()",
    "def-mro-entries": "class A:\n    def __mro_entries__(self, bases):\n        return ()",
    "def-len": "class L(list):\n    def __len__(self):\n        return spin()",
    "def-iter": "class L(list):\n    def __iter__(self):\n        return spin()",
    "def-index": "class I(int):\n    def __index__(self):\n        return spin()",
    "def-format": "class F(float):\n    def __format__(self, spec):\n        return spin()",
    "def-getitem": "class D(dict):\n    def __getitem__(self, key):\n        return spin()",
    "class-attribute-dunder": "class E(Exception):\n    __str__ = spin",
    "class-property-class": "class E:\n    __class__ = property(spin)",
    "class-traceback-attribute": "class E(Exception):\n    __traceback__ = 1",
    "setattr-dunder-on-own-class": "class E(Exception):\n    pass\nsetattr(E, '__str__', spin)\nraise E()",
    "setattr-on-builtin-type": "setattr(str, 'startswith', spin)",
    "class-dict-write": "class E:\n    pass\nE.__dict__['__del__'] = spin",
    "str-subclass-attribute-name": "class S(str):\n    startswith = spin\ngetattr(1, S('__class__'))",
    "str-subclass-hasattr-name": "class S(str):\n    startswith = spin\nhasattr(1, S('__class__'))",
}


def test_the_model_gets_a_type_that_builds_nothing(fresh):
    assert fresh.execute("type(type(1)) is type, type(int) is type, type([]) is list", refuse_calls).output == (
        "(True, True, True)\n"
    )


@pytest.mark.parametrize("code", list(FORGING.values()), ids=list(FORGING))
def test_classes_with_chosen_dunders_or_metaclasses_cannot_be_built(fresh, code):
    result = run(fresh, code)
    assert result.error is not None
    assert "TimeoutError" not in result.error, result.error
    assert_untouched(fresh)


# --- 2. Hostile values handed to every entry point ----------------------------------------------
EQ = "    def __eq__(self, other):\n        return record()\n    def __lt__(self, other):\n        return record()\n"
HOSTILE = {
    "str": f"class H(str):\n{EQ}    startswith = spin\n    encode = spin\n    join = spin\n    strip = spin\n"
    "value = H('answer')",
    "dict": f"class H(dict):\n{EQ}    def __contains__(self, key):\n        return record()\n    items = spin\n"
    "    keys = spin\n    values = spin\n    get = spin\nvalue = H(answer=1)",
    "list": f"class H(list):\n{EQ}    def __contains__(self, item):\n        return record()\n    index = spin\n"
    "    copy = spin\n    count = spin\nvalue = H(['answer'])",
    "namedtuple": f"import collections\nclass H(collections.namedtuple('P', ['answer'])):\n{EQ}    count = spin\n"
    "    index = spin\nvalue = H('answer')",
    "int": f"class H(int):\n{EQ}    bit_length = spin\n    to_bytes = spin\nvalue = H(7)",
    "float": f"class H(float):\n{EQ}    hex = spin\n    is_integer = spin\nvalue = H(1.5)",
    "object": f"class H:\n{EQ}    items = spin\n    keys = spin\nvalue = H()",
}
ENTRY_POINTS = {
    "FINAL": "FINAL(value)",
    "FINAL_VAR": "answer = 'yes'\nFINAL_VAR(value)",
    "llm_query": "llm_query(value)",
    "llm_query_batched": "llm_query_batched([value])",
    "recursive_llm": "recursive_llm('q', value)",
    "recursive_llm_batched": "recursive_llm_batched([('q', value)])",
    "SUBMIT": "SUBMIT(value)",
    "tool": "lookup(value, key=value)",
    "trailing-expression": "value",
    "print": "print(value, value)",
}
HANDOFFS = {
    f"{kind}-to-{entry}": f"{HOSTILE[kind]}\n{ENTRY_POINTS[entry]}" for kind in HOSTILE for entry in ENTRY_POINTS
}


@pytest.mark.parametrize("code", list(HANDOFFS.values()), ids=list(HANDOFFS))
def test_hostile_values_reach_no_method_of_theirs_in_the_worker(fresh, code):
    host = Host()
    result = run(fresh, code, host)
    assert "TimeoutError" not in (result.error or ""), result.error
    for _fn, args, kwargs in host.calls:
        assert_plain(args)
        assert_plain(kwargs)
    assert_untouched(fresh)


def test_a_str_subclass_cannot_talk_final_var_into_a_private_name(fresh):
    code = "class S(str):\n    startswith = record\nFINAL_VAR(S('__builtins__'))"
    result = run(fresh, code)
    assert result.final_answer is None and "no variable named '__builtins__'" in result.error
    assert_untouched(fresh)


def test_host_functions_receive_copies_of_subclassed_values(fresh):
    host = Host()
    code = (
        "import collections\nclass S(str):\n    pass\n"
        "recursive_llm(S('q'), collections.OrderedDict(a=collections.Counter('xx'), b=(S('t'), 2)))"
    )
    run(fresh, code, host)
    assert host.calls == [("recursive_llm", ["q", {"a": {"x": 2}, "b": ["t", 2]}], {})]


# --- 3. Errors whose description would run the model's code -------------------------------------
ERRORS = {
    "message-ordereddict-items-spins": (
        "import collections\nclass D(collections.OrderedDict):\n    items = spin\nraise ValueError(D(a=1))"
    ),
    "message-counter-most-common-spins": (
        "import collections\nclass C(collections.Counter):\n    most_common = spin\nraise ValueError(C('ab'))"
    ),
    "message-deep-nesting": "x = []\nfor i in range(100000):\n    x = [x]\nraise ValueError(x)",
    "message-self-containing": "x = []\nx.append(x)\nraise ValueError(x, x)",
    "args-property-spins": "class E(Exception):\n    args = property(spin)\nraise E('m')",
    "with-traceback-spins": "class E(Exception):\n    with_traceback = spin\nraise E('m')",
    "fake-traceback-attributes": (
        "class E(Exception):\n    tb_frame = 1\n    tb_lineno = 'x'\n    tb_next = 2\nraise E()"
    ),
    "cause-is-hostile": "class C(Exception):\n    args = property(spin)\nraise ValueError('v') from C()",
    "context-is-hostile": (
        "class C(Exception):\n    args = property(spin)\ntry:\n    raise C()\nexcept C:\n    raise ValueError('v')"
    ),
    "key-error-str-subclass": f"class S(str):\n{EQ}    startswith = spin\nraise KeyError(S('k'))",
    "generator-in-exception-spins-at-release": (
        "def g():\n    try:\n        yield 1\n    finally:\n        spin()\nx = g()\nnext(x)\ne = ValueError(x)\n"
        "del x\nraise e"
    ),
    "infinite-recursion": "def f():\n    return f()\nf()",
    "repr-recursion-in-message": "import collections\nd = collections.deque()\nd.append(d)\nraise ValueError(d)",
    "system-exit": "raise SystemExit('bye')",
    "keyboard-interrupt": "raise KeyboardInterrupt",
    "generator-exit": "raise GeneratorExit('x')",
    "own-memory-error-subclass": "class M(MemoryError):\n    args = property(spin)\nraise M()",
    "own-timeout-error": "class T(TimeoutError):\n    args = property(spin)\nraise T('t')",
    "recaptured-final-signal-subclass": (
        "try:\n    FINAL(1)\nexcept BaseException as e:\n    sig = e\nclass Q(type(sig)):\n    args = property(spin)\n"
        "raise ValueError('after')"
    ),
    "error-inside-own-function": "def fail():\n    raise ValueError('late')\nfail()",
    "error-inside-class-body": "class A:\n    x = 1 / 0",
    "lone-surrogate-message": "raise ValueError('bad \\ud800 text')",
    "unprintable-int-message": "raise ValueError(10 ** 10000)",
}


@pytest.mark.parametrize("code", list(ERRORS.values()), ids=list(ERRORS))
def test_errors_are_described_within_the_step_from_plain_data(fresh, code):
    result = run(fresh, code)
    assert result.error is not None or result.final_answer is not None
    assert len(result.error or "") <= 2200
    assert_untouched(fresh)


def test_huge_error_messages_are_clipped(fresh):
    result = run(fresh, "raise ValueError('x' * 10_000_000)")
    assert result.error.startswith("ValueError: xxx") and "characters cut" in result.error
    assert len(result.error) < 2200


def test_ordinary_errors_name_the_class_and_the_step_line(fresh):
    result = run(fresh, "x = 1\nclass Oops(Exception):\n    pass\nraise Oops('it broke')")
    assert result.error == "Oops: it broke (at line 4: raise Oops('it broke'))"
    result = run(fresh, "x = 1\nraise ValueError('x')")
    assert result.error == "ValueError: x (at line 2: raise ValueError('x'))"


def test_an_error_in_code_of_an_earlier_step_names_that_steps_line(fresh):
    run(fresh, "def fail():\n    raise ValueError('late')")
    result = run(fresh, "x = 1\nfail()")
    assert result.error == "ValueError: late (at line 2 of an earlier step)"


def test_a_message_that_cannot_be_shown_still_names_the_error(fresh):
    code = "import collections\nclass D(collections.OrderedDict):\n    items = spin\nraise KeyError(D(a=1))"
    result = run(fresh, code)
    assert result.error.startswith("KeyError"), result.error


# --- 4. Finalizers: a generator's `finally` runs only under a timer ------------------------------
def generator(finally_block: str) -> str:
    return f"def g():\n    try:\n        yield 1\n    finally:\n        {finally_block}\n"


FINALIZERS = {
    "cycle-collected-at-step-end": generator("spin()") + "x = g()\nnext(x)\nl = [x, x]\nl.append(l)\ndel x, l",
    "released-by-trailing-expression": generator("spin()") + "def h():\n    x = g()\n    next(x)\n    return x\nh()",
    "released-on-rebinding": generator("spin()") + "x = g()\nnext(x)\nx = 2",
    "finally-raises": generator("raise ValueError('in finally')") + "x = g()\nnext(x)\ndel x",
    "finally-calls-final": generator("FINAL('from finally')") + "x = [g()]\nnext(x[0])\nx.append(x)\ndel x",
    "finally-calls-llm-query": generator("llm_query(spin)") + "x = [g()]\nnext(x[0])\nx.append(x)\ndel x",
}


@pytest.mark.parametrize("code", list(FINALIZERS.values()), ids=list(FINALIZERS))
def test_garbage_of_the_step_is_finalized_under_its_timer(fresh, code):
    run(fresh, code, Host())
    assert_untouched(fresh)


def test_values_the_host_replaces_are_released_under_a_timer(fresh):
    code = (
        "def g():\n    try:\n        yield 1\n    finally:\n        llm_query('from a finalizer')\n        spin()\n"
        "target = g()\nnext(target)\nlookup = target"
    )
    run(fresh, code)
    started = time.perf_counter()
    fresh.set_variables({"target": 1})
    fresh.define_tools(["lookup"], submit_fields=["answer"])
    assert time.perf_counter() - started < 2 * TIMEOUT
    assert fresh.execute("target", refuse_calls).output == "1\n"
    assert_untouched(fresh)


# --- 5. Text that UTF-8 cannot carry -------------------------------------------------------------
SURROGATES = {
    "final": "FINAL('a\\ud800b')",
    "final-var": "answer = '\\udfff'\nFINAL_VAR('answer')",
    "print": "print('a\\udc00')",
    "error": "raise ValueError('\\ud800')",
    "submit": "SUBMIT('\\ud800')",
    "trailing-str-subclass": "class S(str):\n    pass\nprint(S('\\ud800'))",
    "llm-query": "llm_query('\\ud800')",
}


@pytest.mark.parametrize("code", list(SURROGATES.values()), ids=list(SURROGATES))
def test_lone_surrogates_leave_the_result_valid(fresh, code):
    result = run(fresh, code, Host())
    for text in (result.output, result.error, result.final_answer, json.dumps(result.submitted)):
        if text is not None:
            text.encode("utf-8")
    assert_untouched(fresh)


def test_this_suite_adds_at_least_eighty_attempts():
    attempts = [*FORGING, *HANDOFFS, *ERRORS, *FINALIZERS, *SURROGATES]
    assert len(attempts) == len(set(attempts)) >= 80
