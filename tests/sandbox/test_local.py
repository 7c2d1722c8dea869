"""The local sandbox: a persistent REPL in a separate, limited process that hides the host."""

from __future__ import annotations

import os
import time

import pytest

from rlm.sandbox.base import SandboxLimits
from rlm.sandbox.local import LocalSandbox
from rlm.sandbox.local.sandbox import network_isolation_available


def no_calls(fn, args, kwargs):
    raise AssertionError(f"unexpected host call {fn}")


@pytest.fixture
def sandbox():
    box = LocalSandbox(SandboxLimits(exec_timeout=2.0, memory_limit_mb=256, max_output_chars=2000))
    box.start()
    box.load("line one\nline two\nthe secret is 77\n")
    yield box
    box.close()


def test_state_persists_between_steps(sandbox):
    sandbox.execute("lines = context.splitlines()", no_calls)
    assert sandbox.execute("len(lines)", no_calls).output == "3\n"


def test_trailing_expression_is_shown_like_a_repl(sandbox):
    assert sandbox.execute("x = 2\nx * 21", no_calls).output == "42\n"


def test_json_context_arrives_as_data():
    with LocalSandbox() as box:
        box.load({"a.txt": "alpha", "b.txt": ["x", 1]})
        assert box.execute("sorted(context)", no_calls).output == "['a.txt', 'b.txt']\n"


def test_allowed_modules_work(sandbox):
    code = "import re, json, collections, math\nprint(collections.Counter(re.findall(r'\\w+', context)).most_common(1))"
    assert sandbox.execute(code, no_calls).output == "[('line', 2)]\n"


def test_host_calls_travel_to_the_handler(sandbox):
    seen = []

    def handler(fn, args, kwargs):
        seen.append((fn, args))
        return "host says hi"

    result = sandbox.execute("print(llm_query('ping'))", handler)
    assert result.output == "host says hi\n" and seen == [("llm_query", ["ping"])]


def test_host_failures_raise_subcall_error_in_the_code(sandbox):
    def handler(fn, args, kwargs):
        raise RuntimeError("provider down")

    code = "try:\n    llm_query('x')\nexcept SubcallError as e:\n    print('caught', e)"
    assert "caught RuntimeError: provider down" in sandbox.execute(code, handler).output


@pytest.mark.parametrize(
    "code",
    [
        "import os",
        "import sys",
        "import subprocess",
        "import socket",
        "import importlib",
        "open('/etc/passwd').read()",
        "().__class__.__base__.__subclasses__()",
        "getattr(context, '__class__')",
        "'{0.__class__}'.format(context)",
        "import re\nre.enum",
        "import json\njson.decoder",
        "eval('1+1')",
        "exec('x=1')",
        "compile('1', 'f', 'eval')",
        "__import__('os')",
        "def g():\n    yield 1\ng().gi_frame",
        "globals()",
        "vars()",
        "breakpoint()",
        "import collections\ncollections.abc",
    ],
)
def test_escape_attempts_are_refused_with_an_error(sandbox, code):
    result = sandbox.execute(code, no_calls)
    assert result.error is not None
    assert result.final_answer is None


def test_worker_has_an_empty_environment(sandbox, monkeypatch):
    pid = sandbox._process.pid  # the worker's pid, read from the host side
    with open(f"/proc/{pid}/environ", "rb") as env:
        assert env.read() == b""


@pytest.mark.skipif(not network_isolation_available(), reason="no network namespaces on this machine")
def test_worker_lives_in_its_own_network_namespace(sandbox):
    pid = sandbox._process.pid
    assert os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net")


def test_time_spent_in_host_calls_does_not_count_against_the_step(sandbox):
    def slow_host(fn, args, kwargs):
        time.sleep(3.0)  # longer than the step's 2 s limit
        return f"{fn} answered"

    sandbox.define_tools(["slow_tool"])
    result = sandbox.execute("first = slow_tool()\nprint(first, slow_tool())", slow_host)
    assert result.error is None and result.output == "slow_tool answered slow_tool answered\n"


def test_a_step_that_waits_without_using_cpu_meets_its_own_timeout_and_keeps_the_session():
    """The step's timer counts wall time, as the host's hard kill does: a blocking wait is cut by
    the code's own TimeoutError, and the REPL keeps its variables (a CPU timer never fired here,
    so the host killed the worker and the variables were lost)."""
    with LocalSandbox(SandboxLimits(exec_timeout=1.0), python_policy=False) as box:
        box.load("context")
        box.execute("kept = 'still here'", no_calls)
        result = box.execute("import time\ntime.sleep(30)", no_calls)
        assert "TimeoutError" in result.error and not result.restarted, result.error
        assert box.execute("print(kept)", no_calls).output == "still here\n"


def test_the_ready_modules_work_in_the_worker_and_are_not_listed_as_variables(sandbox):
    result = sandbox.execute("found = collections.Counter(re.findall('line', context))['line']\nprint(found)", no_calls)
    assert result.error is None and result.output == "2\n"
    missing = sandbox.execute("FINAL_VAR('answer')", no_calls)
    assert "Your variables: ['context', 'found']" in missing.error, missing.error


SWALLOW_THE_TIMEOUT = "try:\n    while True:\n        pass\nexcept TimeoutError:\n    caught = True\n"


def test_a_step_past_its_limit_makes_no_host_call_even_when_it_swallowed_the_timeout(sandbox):
    calls = []

    def host(fn, args, kwargs):
        calls.append(fn)
        return "answered"

    sandbox.define_tools(["tool"])
    result = sandbox.execute(SWALLOW_THE_TIMEOUT + "late = tool()", host)
    assert calls == [] and "TimeoutError" in result.error, (calls, result.error)


def test_a_step_that_swallowed_its_timeout_still_reports_it_and_keeps_its_variables(sandbox):
    result = sandbox.execute(SWALLOW_THE_TIMEOUT + "after = 1", no_calls)
    assert "TimeoutError" in result.error and not result.restarted, result.error
    assert sandbox.execute("print(caught, after)", no_calls).output == "True 1\n"
    assert sandbox.execute("print('next step')", no_calls).error is None  # a fresh limit


def test_infinite_loop_is_stopped_within_the_limit_and_the_session_continues(sandbox):
    sandbox.execute("kept = 'still here'", no_calls)
    started = time.perf_counter()
    result = sandbox.execute("while True:\n    pass", no_calls)
    assert time.perf_counter() - started < 2.0 + 1.0
    assert "TimeoutError" in result.error
    assert sandbox.execute("kept", no_calls).output == "'still here'\n"


def test_loop_that_swallows_the_timeout_is_killed_and_context_reloaded(sandbox):
    code = "while True:\n    try:\n        while True:\n            pass\n    except BaseException:\n        pass"
    started = time.perf_counter()
    result = sandbox.execute(code, no_calls)
    assert time.perf_counter() - started < 2.0 + 1.5
    assert result.restarted and "TimeoutError" in result.error
    assert sandbox.execute("context.splitlines()[-1]", no_calls).output == "'the secret is 77'\n"


def test_memory_bomb_is_contained_and_the_host_is_unaffected(sandbox):
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = sandbox.execute("blocks = []\nfor i in range(10_000):\n    blocks.append(bytes(10**7))", no_calls)
    assert "MemoryError" in result.error or "SandboxCrash" in result.error
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100 * 1024  # KiB: under 100 MB
    assert sandbox.execute("len(context)", no_calls).output == "35\n"


def test_huge_print_is_capped(sandbox):
    result = sandbox.execute("print('x' * 100_000_000)", no_calls)
    assert len(result.output) < 2200
    assert "characters cut" in result.output


def test_non_ascii_context_survives_the_transfer():
    text = "héllo wörld — 日本語 🙂\n" * 1000
    with LocalSandbox() as box:
        box.load(text)
        assert box.execute("len(context), context[:5]", no_calls).output == f"({len(text)}, 'héllo')\n"


def test_a_missing_attribute_is_pythons_attribute_error_not_none(sandbox):
    result = sandbox.execute("[1].nosuch", no_calls)
    assert result.error is not None and result.error.startswith("AttributeError") and "nosuch" in result.error
    result = sandbox.execute("{'a': 'b'}.splitlines()", no_calls)
    assert result.error is not None and "AttributeError" in result.error and "splitlines" in result.error
    result = sandbox.execute("print(getattr([], 'nope', 5), hasattr([], 'nope'), hasattr([], 'append'))", no_calls)
    assert result.output == "5 False True\n"
    assert "AttributeError" in (sandbox.execute("getattr([], 'nope')", no_calls).error or "")


def test_offered_functions_show_their_name_and_no_address(sandbox):
    result = sandbox.execute("print(FINAL, FINAL_VAR, llm_query, llm_query_batched, recursive_llm)", no_calls)
    assert (
        result.output
        == " ".join(
            f"<REPL function {name}>"
            for name in ("FINAL", "FINAL_VAR", "llm_query", "llm_query_batched", "recursive_llm")
        )
        + "\n"
    )


def test_a_wrong_call_of_final_names_final_not_the_worker_s_classes(sandbox):
    result = sandbox.execute("FINAL(1, 2)", no_calls)
    assert "FINAL() takes 1 positional argument but 2 were given" in result.error
    assert "Session" not in result.error
