"""`rlm.session(context)`: one loaded context, many questions, the REPL's variables kept."""

from __future__ import annotations

import pytest

from rlm import RLM, register_sandbox
from rlm.sandbox import registry
from rlm.sandbox.local import LocalSandbox
from tests.conftest import last_user_message


def code(src: str) -> str:
    return f"Running this.\n```python\n{src}\n```"


class CountingSandboxes:
    """A registered sandbox that counts context loads and live workers."""

    def __init__(self) -> None:
        self.loads = 0
        self.boxes: list[LocalSandbox] = []

    def __call__(self, limits):
        counter = self

        class Counted(LocalSandbox):
            def load(self, context):
                counter.loads += 1
                super().load(context)

        box = Counted(limits)
        self.boxes.append(box)
        return box


@pytest.fixture
def counted():
    sandboxes = CountingSandboxes()
    register_sandbox("counted-for-tests", sandboxes)
    yield sandboxes
    registry._FACTORIES.pop("counted-for-tests")


def test_a_later_question_uses_a_variable_an_earlier_one_made(make_lm, counted):
    lm, engine = make_lm(
        [
            code("words = context.split()\nFINAL(len(words))"),
            code("FINAL(words[-1].upper())"),
        ]
    )
    rlm = RLM(model=lm, sandbox="counted-for-tests")
    with rlm.session("alpha beta gamma") as session:
        assert session.completion("How many words?") == "3"
        result = session.run("What is the last word, in capitals?")
    assert result.answer == "GAMMA" and result.finish_reason == "final"
    assert counted.loads == 1  # the context crossed into the sandbox once
    told = engine.calls[1][-1]["content"]
    assert "Earlier question: How many words?" in told and "Its answer: 3" in told
    assert "words (list of 3: ['alpha', 'beta', 'gamma'])" in told
    assert counted.boxes[0]._process is None  # closing the session closed its sandbox


def test_each_question_is_a_run_of_its_own(make_lm):
    lm, _ = make_lm([code("FINAL(len(context))"), code("n = 1\nFINAL('x')")])
    with RLM(model=lm).session("abc") as session:
        first = session.run("q1")
        second = session.run("q2", output=str)
    assert (first.answer, first.iterations, second.value) == ("3", 1, "x")


def test_reset_forgets_the_questions_and_the_variables(make_lm):
    lm, engine = make_lm([code("kept = 1\nFINAL('a')"), code("FINAL('b')")])
    with RLM(model=lm).session("abc") as session:
        session.completion("q1")
        session.reset()
        assert session.completion("q2") == "b"
    assert "Earlier question" not in last_user_message(engine.calls[1])


def test_a_variable_lost_in_a_restart_is_reported_as_lost(make_lm):
    stubborn = "while True:\n    try:\n        while True:\n            pass\n    except BaseException:\n        pass"
    replies = [code("kept = [1, 2]\nFINAL('a')"), code(stubborn), code("FINAL('c')"), "FINAL(d)"]
    lm, engine = make_lm(replies)
    with RLM(model=lm, exec_timeout=1).session("abc") as session:
        session.completion("q1")
        session.completion("q2")  # its first step ignores its time limit: the worker is replaced
        assert session.completion("q3") == "d"
    assert "kept (list of 2: [1, 2])" in engine.calls[1][-1]["content"]
    assert "kept (lost: the REPL was restarted)" in engine.calls[3][-1]["content"]


async def test_async_sessions(make_lm):
    lm, _ = make_lm([code("n = len(context)\nFINAL(n)"), code("FINAL(n * 2)")])
    async with RLM(model=lm).session("abcd") as session:
        assert await session.acompletion("q1") == "4"
        assert await session.acompletion("q2") == "8"


def test_a_closed_session_says_so(make_lm):
    lm, _ = make_lm([])
    session = RLM(model=lm).session("abc")
    session.close()
    with pytest.raises(RuntimeError, match="session is closed"):
        session.completion("q")
