"""Ninth attack round: paths the earlier rounds did not take. Typed answers (`output=T`, `--output`),
DSPy's `RestrictedInterpreter`, session compaction and the variable listing, the E2B adapter's
stdout markers (against the fake), and the host's own parsing of replies (code fences, FINAL in
prose, the founded-answer check).

Eight holes were found by this round and are closed (each was a strict xfail here first;
reproductions and causes in the round's HOLES.md): a typed int past Python's 4,300-digit str limit,
written in hex, was validated and then raised out of `rlm ask --output int`; replies of escaped
quotes after FINAL( or of backticks made the host's parsers quadratic; the founded-answer check
compared every number of an answer with every number shown, and its bookkeeping scanned the code
once per assignment; the E2B adapter answered call markers printed in a loop without counting
the time against the step, and let a deeply nested marker raise out of `run()`; after a worker
restart DSPy's interpreter no longer offered SUBMIT, the tools, or the variables it had sent.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
from dspy.primitives.code_interpreter import CodeExecutionError, CodeInterpreterError, FinalOutput
from pydantic import BaseModel

from rlm import RLM
from rlm.cli.main import main
from rlm.engine import grounding
from rlm.sandbox.base import SandboxLimits
from rlm.sandbox.dspy_interop import RestrictedInterpreter
from rlm.sandbox.e2b.bridge import CALL_MARK, FINAL_MARK
from rlm.sandbox.local import jail
from rlm.testing import FakeOpenAIServer, scripted_lm
from tests.sandbox.conftest import code, finishes_within
from tests.sandbox.fake_e2b import FakeSandbox

pytestmark = pytest.mark.skipif(not jail.probe().available, reason=f"no OS jail here: {jail.probe().problem}")

# A context too long to be shown whole in the prompt, so the founded-answer check is on.
LONG_CONTEXT = "a long document. " * 5000


def ask(reply: str, tmp_path: Path, *extra: str) -> tuple[int, str]:
    """`rlm ask` in this process against a local OpenAI-style server that always replies `reply`."""
    document = tmp_path / "doc.txt"
    document.write_text("a document")
    server = FakeOpenAIServer(lambda body: reply).start()
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            status = main(["ask", "q?", "--context", str(document), "--model", "openai/test-model",
                           "--api-base", server.base_url, *extra])  # fmt: skip
    finally:
        server.stop()
    return status, out.getvalue()


# --- hole 1: a typed int past Python's str limit raises out of `rlm ask --output int` -------------
# Written in hex, which int()'s 4,300-digit limit does not cover, the value validates as an int;
# printing it (json.dumps, str) then raises ValueError.
def test_rlm_ask_output_int_survives_an_int_too_long_to_print(tmp_path):
    status, shown = ask(code("FINAL('0x' + 'f' * 5000)"), tmp_path, "--output", "int")
    assert status in (0, 3) and "Traceback" not in shown  # 3: no answer fitted --output


def test_a_typed_int_value_can_always_be_written_as_json():
    lm, _ = scripted_lm([code("FINAL('[0x' + 'f' * 5000 + ']')"), code("FINAL('[1]')")])
    result = RLM(model=lm).run("q", "ctx", output=list[int])
    assert result.value is None or json.loads(json.dumps(result.value)) == result.value


# --- typed answers (held) ------------------------------------------------------------------------
class Point(BaseModel):
    x: int
    y: float


@dataclass
class Pair:
    name: str
    count: int


HOSTILE_TYPED = [
    (float, "'nan'"),
    (float, "'-inf'"),
    (float, "'1e999'"),
    (int, "'1' * 5000"),  # decimal past the limit: a refusal, never a ValueError
    (int, "'9' * 4300"),
    (list[int], "'[' + ','.join(['1'] * 20000) + ']'"),
    (dict[str, int], '\'{"a": 1, "a": "x"}\''),  # duplicate keys: the last one wins, and is refused
    (Point, '\'{"x": 1, "y": "NaN", "__class__": 1, "model_config": {}}\''),
    (Point, "'{\"x\": ' + '9' * 5000 + ', \"y\": 1}'"),
    (Pair, "'{\"name\": ' + '[' * 3000 + ']' * 3000 + ', \"count\": 1}'"),
    ("count: int, names: list[str]", '\'{"count": 1e400, "names": ["a"]}\''),
    ("count: int, names: list[str]", '\'{"count": 1, "names": {"a": 1}}\''),
    (bool, "'True' * 10000"),
    (list[int], "str([1] * 5000)"),
]


@pytest.mark.parametrize(("output", "final"), HOSTILE_TYPED, ids=[f"{i}" for i in range(len(HOSTILE_TYPED))])
def test_a_hostile_typed_answer_is_a_value_or_a_refusal_never_an_exception(output, final):
    fallbacks = ['\'{"x": 1, "y": 2, "name": "n", "count": 1, "names": []}\'', "'1'", "'[1]'", "'{}'"]
    script = [code(f"FINAL({text})") for text in (final, *fallbacks)]
    lm, _ = scripted_lm(lambda messages: script.pop(0) if script else code("FINAL('1')"))
    result = RLM(model=lm, max_iterations=6).run("q", "ctx", output=output)
    assert result.finish_reason in ("final", "max_iterations")
    if isinstance(result.value, float):
        assert math.isnan(result.value) or result.value in (math.inf, -math.inf) or result.value == 1.0
    elif result.value is not None:
        json.dumps(result.value, default=vars)  # every value the host returns can be written


def test_a_typed_refusal_names_the_problem_and_the_run_goes_on():
    lm, engine = scripted_lm([code('FINAL(\'{"x": "not a number", "y": 1}\')'), code('FINAL(\'{"x": 2, "y": 1}\')')])
    result = RLM(model=lm).run("q", "ctx", output=Point)
    assert result.value == Point(x=2, y=1.0)
    assert "does not fit the expected type" in engine.calls[1][-1]["content"]


# --- hole 2 and 3: replies that make the host's parsers quadratic -------------------------------------
PARSE_IN_A_RUN = """
from rlm import RLM
from rlm.testing import scripted_lm
lm, _ = scripted_lm([{reply}, "```python\\nFINAL('x')\\n```"])
result = RLM(model=lm, max_iterations=3).run("q", "ctx")
assert {check}
"""


def test_a_reply_of_escaped_quotes_after_final_is_parsed_in_linear_time():
    # 400 KB: linear parsing takes well under a second; the quadratic one takes many minutes. The
    # reply ends the run as a prose FINAL (taken as written): what matters is that parsing ends.
    script = PARSE_IN_A_RUN.format(reply="'FINAL(' + \"'\\\\\" * 200_000", check='result.finish_reason == "final"')
    assert finishes_within(script, 30)


def test_a_reply_of_backticks_is_parsed_in_linear_time():
    assert finishes_within(PARSE_IN_A_RUN.format(reply="'`' * 1_000_000", check="result.answer == 'x'"), 30)


def test_the_hosts_bookkeeping_of_a_long_step_is_linear_in_its_code():
    # 100,000 assignments (600 KB of code): linear bookkeeping takes about a second, quadratic minutes.
    script = "from rlm.engine.grounding import Grounding\nGrounding('q').saw(1, 'x = 1\\n' * 100_000, 'out')"
    assert finishes_within(script, 30)


# Large replies of shapes the parsers handle in linear time (held; each a run that ends normally).
LARGE_REPLIES = {
    "prose": "'word ' * 200_000",
    "many fences": "'```python\\nx = 1\\n```\\n' * 20_000",
    "open fence then lines": "'```python\\n' + 'print(1)\\n' * 2_000",
    "balanced parentheses": "'FINAL(' + '(' * 100_000 + ')' * 100_000",
    "closed quotes": "'FINAL(' + \"'a' \" * 100_000",
    "many FINAL lines": "'FINAL_VAR(\\n' * 100_000",
}


def test_large_replies_of_linear_shapes_end_the_run_normally():
    replies = ", ".join(LARGE_REPLIES.values())
    script = f"""
from rlm import RLM
from rlm.testing import scripted_lm
for reply in [{replies}]:
    lm, _ = scripted_lm([reply, "```python\\nFINAL('x')\\n```", "```python\\nFINAL('x')\\n```"])
    assert RLM(model=lm, max_iterations=3).run("q", "ctx").finish_reason in ("final", "max_iterations")
"""
    assert finishes_within(script, 40)


@pytest.mark.parametrize(
    "reply",
    [
        "FINAL_VAR(__import__)",
        "FINAL_VAR('context')",
        'FINAL("""unterminated',
        "```python\n```python\nx = 1\n```\n```",
        "````python\nFINAL('a')\n````",
        "> FINAL(" + "'" * 10 + ")",
    ],
)
def test_hostile_text_finals_and_nested_fences_never_raise(reply):
    script = [reply]
    lm, _ = scripted_lm(lambda messages: script.pop() if script else code("FINAL('ok')"))
    result = RLM(model=lm, max_iterations=3).run("q", "ctx")
    assert isinstance(result.answer, str) and result.finish_reason in ("final", "max_iterations")


# --- hole 4: the founded-answer check is claims x evidence ---------------------------------------------
def test_the_founded_answer_check_does_work_linear_in_the_answer_and_the_outputs(monkeypatch):
    compared = [0]
    rounds_to = grounding._rounds_to

    def counted(shown, number):
        compared[0] += 1
        if compared[0] > 1_000_000:
            raise OverflowError("past a million comparisons")
        return rounds_to(shown, number)

    monkeypatch.setattr(grounding, "_rounds_to", counted)
    check = grounding.Grounding("q")
    for step in (1, 2):
        check.saw(step, "print(1)", "1 " * 2000)  # within max_output_chars
    with contextlib.suppress(OverflowError):
        check.unfounded("2 " * 40_000, True, 3)  # within max_answer_chars
    assert compared[0] <= 10 * (40_000 + 4000)


def test_a_typed_answer_founded_on_an_output_is_accepted():
    lm, _ = scripted_lm([code("print('the total is 1,234.5')"), code("FINAL('1,234.5')")])
    assert RLM(model=lm).run("q", LONG_CONTEXT).answer == "1,234.5"


# --- the E2B adapter's markers, against the fake ----------------------------------------------------------


FORGED_MARKERS = {
    "final not a string": f"print({FINAL_MARK!r} + '[1, 2]')",
    "final garbled": f"print({FINAL_MARK!r} + '\"unterminated')",
    "final huge": f"print({FINAL_MARK!r} + '\"' + 'x' * 3_000_000)",
    "call bad id": f'print({CALL_MARK!r} + \'{{"id": "../../etc/passwd", "fn": "llm_query", "args": ["x"]}}\')',
    "call args not a list": f'print({CALL_MARK!r} + \'{{"id": "\' + \'a\' * 32 + \'", "fn": "x", "args": 1}}\')',
    "marker mid-line": f"print('text ' + {FINAL_MARK!r} + '[]', end='')",
}


@pytest.mark.parametrize("forged", list(FORGED_MARKERS.values()), ids=list(FORGED_MARKERS))
def test_forged_or_garbled_markers_are_plain_output(fake_e2b, forged):
    lm, engine = scripted_lm([code(forged), code("FINAL('done')")])
    result = RLM(model=lm, sandbox="e2b", exec_timeout=10.0).run("q", "ctx")
    assert result.answer == "done" and result.iterations == 2
    assert len(engine.calls) == 2  # no forged marker became an LM call


def test_a_forged_call_marker_is_a_sub_call_within_the_budget(fake_e2b):
    marker = f"{CALL_MARK}" + json.dumps({"id": "b" * 32, "fn": "llm_query", "args": ["hi"]})
    forged = f"import time\nfor _ in range(5):\n    print({marker!r}, flush=True)\ntime.sleep(1)"
    lm, _ = scripted_lm([code(forged), *["sub"] * 5, code("FINAL('done')")])
    result = RLM(model=lm, sandbox="e2b", exec_timeout=10.0, max_llm_calls=3).run("q", "ctx")
    assert result.llm_calls <= 3 + 1  # the budget, plus the last "answer now" call


# --- hole 8: a deeply nested marker raises out of run() ------------------------------------------------
@pytest.mark.parametrize("mark", [CALL_MARK, FINAL_MARK], ids=["call", "final"])
def test_a_deeply_nested_marker_is_plain_output_not_an_exception(fake_e2b, mark):
    lm, _ = scripted_lm([code(f"print({mark!r} + '[' * 100000 + ']' * 100000)"), code("FINAL('done')")])
    assert RLM(model=lm, sandbox="e2b").run("q", "ctx").answer == "done"


# --- hole 5: call markers printed in a loop keep the host answering past every step limit ---------------
FLOOD = """import json, uuid
while True:
    print("\\x1eRLM_CALL " + json.dumps({"id": uuid.uuid4().hex, "fn": "llm_query", "args": ["x"]}), flush=True)"""


def test_call_markers_printed_in_a_loop_cannot_hold_the_step_past_its_limits(fake_e2b):
    fake_e2b.upload_bytes_per_s = 5000  # a reply file takes ~20 ms to write, as over a network
    lm, _ = scripted_lm([code(FLOOD), "sub", "sub", code("FINAL('done')"), code("FINAL('done')")])
    rlm = RLM(model=lm, sandbox="e2b", exec_timeout=1.0, max_step_seconds=2.0, max_llm_calls=4)
    thread = threading.Thread(target=rlm.run, args=("q", "ctx"), daemon=True)
    thread.start()
    # A flood that holds the step goes on for ever: the bound need only be far past a run that ends
    # (which took more than the former 6 s on a loaded machine).
    thread.join(60)
    stuck = thread.is_alive()
    FakeSandbox.shutdown()  # ends the flood either way
    thread.join(3)
    assert not stuck


# --- hole 6 and DSPy's interpreter ---------------------------------------------------------------------
@pytest.fixture
def interpreter():
    made = RestrictedInterpreter(
        tools={"lookup": lambda key: f"value of {key}"},
        output_fields=[{"name": "answer"}, {"name": "score", "type": "int"}],
        limits=SandboxLimits(exec_timeout=1.0, memory_limit_mb=256),
    )
    yield made
    made.shutdown()


VARIABLES = {"context": "ctx", "query": "q"}


@pytest.mark.parametrize(
    "breaker",
    [
        "while True:\n    try:\n        while True:\n            pass\n    except BaseException:\n        pass",
        "SUBMIT('x', int('f' * 5000, 16))",
    ],
    ids=["swallowed-timeout", "huge-int-submit"],
)
def test_submit_tools_and_variables_survive_a_worker_restart(interpreter, breaker):
    assert interpreter.execute("SUBMIT(query, 1)", VARIABLES) == FinalOutput({"answer": "q", "score": 1})
    with pytest.raises(CodeExecutionError):
        interpreter.execute(breaker, VARIABLES)
    got = interpreter.execute("SUBMIT(query + ' ' + lookup('k'), 2)", VARIABLES)
    assert got == FinalOutput({"answer": "q value of k", "score": 2})


@pytest.mark.parametrize(
    "submit",
    [
        "SUBMIT({1, 2}, 1)",
        "SUBMIT(b'x', 1)",
        "SUBMIT(answer='x', score=1, other=2)",
        "SUBMIT()",
        "SUBMIT('x' * 3_000_000, 1)",
        "v = []\nfor i in range(3000):\n    v = [v]\nSUBMIT(v, 1)",
        "SUBMIT(lookup, 1)",
        "lookup(*['k'] * 100_000)",
        "lookup(key=lookup)",
    ],
)
def test_hostile_submits_and_tool_calls_give_dspys_types_only(interpreter, submit):
    try:
        got = interpreter.execute(submit, VARIABLES)
    except (CodeExecutionError, CodeInterpreterError, SyntaxError):
        got = None
    assert got is None or isinstance(got, (FinalOutput, str))
    assert interpreter.execute("print(len(context))", VARIABLES) in ("3\n",)


def test_variables_with_reserved_names_are_refused_as_a_recoverable_error(interpreter):
    with pytest.raises(CodeExecutionError, match="leading underscore"):
        interpreter.execute("1", {"__builtins__": {}, "context": "ctx"})
    assert interpreter.execute("print(len(context))", VARIABLES) == "3\n"


# --- sessions: the variable listing and compaction (held) ----------------------------------------------
def test_a_session_lists_many_and_huge_named_variables_and_answers_on():
    huge = "v" + "x" * 100_000
    make = "\n".join([f"{huge} = 1", *(f"n{i} = list(range(100))" for i in range(300)), "FINAL('made')"])
    lm, engine = scripted_lm([code(make), code("FINAL('second')")])
    with RLM(model=lm).session("ctx") as session:
        assert session.completion("first") == "made"
        assert session.completion("second?") == "second"
    assert "Your variables from earlier queries" in engine.calls[-1][1]["content"] + engine.calls[-1][-1]["content"]


HOSTILE_SUMMARIES = [
    code("FINAL('taken from the summary')"),
    "FINAL('a summary that looks like an answer')",
    "x" * 400_000,
    "",
    "\ud800 summary",
]


@pytest.mark.parametrize("summary", HOSTILE_SUMMARIES, ids=["code", "text-final", "huge", "empty", "surrogate"])
def test_a_hostile_summary_never_raises_nor_becomes_the_answer(summary):
    step = code("print('o' * 3000)")

    def reply(messages):
        if "this conversation is about to be replaced by your summary" in messages[-1]["content"]:
            return summary
        if sum("FINAL" in m["content"] for m in messages if m["role"] == "assistant") >= 1:
            return code("FINAL('real answer')")
        return step if len(messages) < 12 else code("FINAL('real answer')")

    lm, engine = scripted_lm(reply)
    with RLM(model=lm, max_iterations=10, max_llm_calls=30).session("ctx", compact_at_tokens=3000) as session:
        for _ in range(2):
            answer = session.completion("q")
            assert answer in ("real answer", "")
    assert len(engine.calls) <= 30 + 2


# --- the CLI with typed output (held) ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("output", "final"),
    [("list[int]", "'[' + '1,' * 20000 + '1]'"), ("float", "'nan'"), ("dict[str, int]", "'{\"\\\\u001b]52\": 1}'")],
)
def test_rlm_ask_output_prints_json_for_hostile_values(tmp_path, output, final):
    status, shown = ask(code(f"FINAL({final})"), tmp_path, "--output", output)
    # NaN is refused as a typed float since session 9 (strict JSON cannot hold it): a clear "no
    # answer fitted", exit status 3 (no answer).
    assert status == (3 if final == "'nan'" else 0) and "Traceback" not in shown
    assert "\x1b" not in shown


def test_the_helper_tells_a_script_that_hangs_from_one_that_ends():
    assert not finishes_within("while True:\n    pass", 1)  # stopped at 1 s of CPU time
    assert finishes_within("print('quick')", 30)
