"""The local sandbox serves DSPy's own `dspy.RLM` as a CodeInterpreter."""

from __future__ import annotations

import dspy
import pytest
from dspy.primitives.code_interpreter import CodeExecutionError, CodeInterpreter, FinalOutput

from rlm.sandbox.dspy_interop import RestrictedInterpreter


def chat_reply(code: str) -> str:
    return f"[[ ## reasoning ## ]]\nLet me check.\n\n[[ ## code ## ]]\n```python\n{code}\n```\n\n[[ ## completed ## ]]"


def test_it_implements_the_protocol():
    assert isinstance(RestrictedInterpreter(), CodeInterpreter)


def test_dspy_rlm_runs_on_the_restricted_interpreter(make_lm):
    lm, engine = make_lm(
        [
            chat_reply("n = context.count('x')\nprint(n)"),
            chat_reply("SUBMIT(answer=str(n) + ' ' + llm_query('name a colour'))"),
        ]
    )
    sub, _ = make_lm(["red"], model="scripted/sub")
    rlm = dspy.RLM("context, query -> answer", max_iters=4, sub_lm=sub, interpreter_factory=RestrictedInterpreter)
    with dspy.context(lm=lm):
        prediction = rlm(context="x" * 7 + "y", query="how many x?")
    assert prediction.answer == "7 red"
    assert "7" in engine.calls[1][-1]["content"]


def test_variables_cross_to_the_worker_only_when_they_change():
    interpreter = RestrictedInterpreter()
    sent = []
    original = interpreter._sandbox.set_variables
    interpreter._sandbox.set_variables = lambda variables: (sent.append(sorted(variables)), original(variables))
    big = "a" * 1_000_000
    try:
        assert interpreter.execute("len(context)", {"context": big, "query": "q"}) == "1000000\n"
        assert interpreter.execute("query", {"context": big, "query": "q"}) == "'q'\n"
        assert interpreter.execute("query", {"context": big, "query": "other"}) == "'other'\n"
    finally:
        interpreter.shutdown()
    assert sent == [["context", "query"], ["query"]]


def test_errors_and_submit_map_to_dspy_types():
    interpreter = RestrictedInterpreter(output_fields=[{"name": "answer"}, {"name": "score", "type": "int"}])
    try:
        with pytest.raises(CodeExecutionError, match="ZeroDivisionError"):
            interpreter.execute("1 / 0")
        with pytest.raises(SyntaxError):
            interpreter.execute("def broken(:")
        with pytest.raises(CodeExecutionError, match="not allowed"):
            interpreter.execute("import os")
        assert interpreter.execute("SUBMIT('yes', 3)") == FinalOutput({"answer": "yes", "score": 3})
    finally:
        interpreter.shutdown()


def test_tools_are_called_on_the_host_with_keyword_arguments():
    calls = []

    def lookup(key: str, default: str = "") -> str:
        calls.append((key, default))
        return f"value of {key}"

    interpreter = RestrictedInterpreter(tools={"lookup": lookup})
    try:
        assert interpreter.execute("print(lookup('a', default='z'))") == "value of a\n"
    finally:
        interpreter.shutdown()
    assert calls == [("a", "z")]


def test_a_forged_call_cannot_reach_a_tool_that_was_not_offered():
    # A worker past the policy writes its own call frame; "_hidden" (a leading underscore, as DSPy's
    # sub-agent shim) is never offered to the code, so the host refuses it too.
    reached: list[str] = []
    interpreter = RestrictedInterpreter(tools={"_hidden": lambda: reached.append("hidden") or "secret"})
    interpreter._sandbox.python_policy = False
    forged = (
        "import json, struct, sys\n"
        "protocol = sys.modules['protocol']\n"
        "frame = json.dumps({'type': 'call', 'fn': '_hidden', 'args': [], 'kwargs': {}}).encode()\n"
        "import os\nos.write(4, struct.pack('>I', len(frame)) + frame)\n"
        "size = struct.unpack('>I', os.read(3, 4))[0]\n"
        "print(json.loads(os.read(3, size)))\n"
    )
    try:
        output = interpreter.execute(forged)
    finally:
        interpreter.shutdown()
    assert reached == [] and "no tool named" in str(output)
