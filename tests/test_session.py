"""`rlm.session(context)`: one loaded context, many questions, the REPL's variables kept."""

from __future__ import annotations

import re

import pytest

from rlm import RLM, register_sandbox
from rlm.config import RLMConfig
from rlm.engine.conversation import SUMMARY_REQUEST
from rlm.engine.prompts import INSTRUCTIONS
from rlm.events import LimitReached
from rlm.sandbox import registry
from rlm.sandbox.local import LocalSandbox


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
    told = "\n".join(m["content"] for m in engine.calls[1])
    assert ("How many words?" in told and "FINAL(len(words))" in told) or "Its answer: 3" in told
    assert "words (list of 3: ['alpha', 'beta', 'gamma'])" in engine.calls[1][-1]["content"]
    assert counted.boxes[0]._process is None  # closing the session closed its sandbox


def test_each_question_is_a_run_of_its_own(make_lm):
    lm, _ = make_lm([code("FINAL(len(context))"), code("n = 1\nFINAL('x')")])
    with RLM(model=lm).session("abc") as session:
        first = session.run("q1")
        second = session.run("q2", output=str)
    assert (first.answer, first.iterations, second.value) == ("3", 1, "x")


def test_a_context_with_a_lone_surrogate_is_made_writable_once_for_every_question(make_lm):
    # Session._open repairs the text once; each question's run takes it as it is then (module._prepare)
    lm, engine = make_lm([code("FINAL(context[:3])"), code("FINAL(context[-3:])")])
    with RLM(model=lm).session("a\ud800b c \udfffd") as session:
        answers = [session.run("first three").answer, session.run("last three").answer]
        assert session.context == "a?b c ?d"
    assert answers == ["a?b", " ?d"]
    "".join(m["content"] for call in engine.calls for m in call).encode("utf-8")  # every request was writable


def test_reset_forgets_the_questions_and_the_variables(make_lm):
    lm, engine = make_lm([code("kept = 1\nFINAL('a')"), code("FINAL('b')")])
    with RLM(model=lm).session("abc") as session:
        session.completion("What came first?")
        session.reset()
        assert session.completion("q2") == "b"
    assert not any("What came first?" in m["content"] or "kept" in m["content"] for m in engine.calls[1])


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


# --- the conversation carried over, and compacted ------------------------------------------------------
VAULT_CONTEXT = "\n".join(
    f"{i:04d} INFO routine line {i}" if i != 60 else "0060 WARN VAULT code=4711" for i in range(120)
)
SUMMARY = "Summary: query 1 asked for the vault code; the WARN line in context says the vault code is 4711."


def vault_model(messages: list[dict[str, str]]) -> str:
    """A scripted root model for two questions; it answers question 2 from the summary it wrote."""
    last = messages[-1]["content"]
    if SUMMARY_REQUEST in last:
        return SUMMARY
    if "What was the vault code again?" in last or "What was the vault code again?" in messages[1]["content"]:
        written = [m["content"] for m in messages[2:] if m["role"] == "assistant"]
        found = re.search(r"vault code is (\d+)", " ".join(written))
        return f'From my summary.\n```python\nFINAL("{found.group(1)}")\n```' if found else "FINAL(unknown)"
    if not any(m["role"] == "assistant" for m in messages):
        # printed at length: the conversation is past the limit when question 2 comes
        return code("print(context)")
    return code("line = [l for l in context.splitlines() if 'VAULT' in l][0]\nFINAL(line.split('=')[1].split()[0])")


def test_a_fact_from_question_one_survives_compaction_into_question_two(make_lm):
    lm, engine = make_lm(vault_model)
    events = []
    rlm = RLM(model=lm, enable_history=True, on_event=events.append)
    # Past the instructions and question 1's printed context, below that plus question 2's opening.
    limit = (len(INSTRUCTIONS) + len(VAULT_CONTEXT) + 1200) // 3
    with rlm.session(VAULT_CONTEXT, compact_at_tokens=limit) as session:
        first = session.run("What is the vault code?")
        second = session.run("What was the vault code again?")
    assert (first.answer, second.answer, second.finish_reason) == ("4711", "4711", "final")
    q1_step1, q1_step2, compact_call, q2_step = engine.calls
    # The summary request follows question 1's turns after the same prefix: the provider's cache pays.
    assert compact_call[:3] == q1_step2[:3] and SUMMARY_REQUEST in compact_call[-1]["content"]
    # Question 2 is sent after the same system prompt and first message, byte for byte, then the summary.
    assert q2_step[:2] == q1_step1[:2]
    assert q2_step[2] == {"role": "assistant", "content": SUMMARY}
    assert "What was the vault code again?" in q2_step[-1]["content"]
    assert not any("0060 WARN VAULT" in m["content"] for m in q2_step)  # the printed context was folded
    # One counted call, recorded in the history and as an event.
    assert second.llm_calls == 2
    assert [r["purpose"] for r in rlm.get_history()] == ["step", "step", "compact", "step"]
    compacted = [e for e in events if isinstance(e, LimitReached) and e.limit == "compact_at_tokens"]
    assert len(compacted) == 1 and "summary" in compacted[0].detail
    assert [(c.question, c.step, c.summary) for c in session.compactions] == [(2, 1, SUMMARY)]


def test_the_conversation_carries_over_without_a_note_of_earlier_answers(make_lm):
    lm, engine = make_lm([code("words = context.split()\nFINAL(len(words))"), code("FINAL(words[0])")])
    with RLM(model=lm).session("alpha beta gamma") as session:
        session.completion("How many words?")
        assert session.completion("Which word is first?") == "alpha"
    second = engine.calls[1]
    assert second[:2] == engine.calls[0][:2]
    assert second[2] == {"role": "assistant", "content": code("words = context.split()\nFINAL(len(words))")}
    assert "Which word is first?" in second[3]["content"] and "Earlier question" not in second[3]["content"]
    assert "words (list of 3" in second[3]["content"]
    assert session.compactions == []


def long_marker_run(lm):
    """One question over a context read in 1,500-character chunks, compacted after about two of them."""
    from rlm.engine.module import RLMModule

    context = "a" * 1500 + " marker-B " + "b" * 1490 + "c" * 3000
    module = RLMModule(RLMConfig(compact_at_tokens=(len(INSTRUCTIONS) + 3500) // 3), lm)
    return module(query="Which marker is there?", context=context).result


def test_one_long_question_is_compacted_within_its_run(make_lm):
    def model(messages: list[dict[str, str]]) -> str:
        if SUMMARY_REQUEST in messages[-1]["content"]:
            return "Summary: printed chunks 0 and 1; chunk 1 held 'marker-B'."
        steps = sum(m["role"] == "assistant" for m in messages)
        if any(m["content"].startswith("Summary:") for m in messages if m["role"] == "assistant"):
            return code("FINAL('marker-B')")
        return code(f"print(context[{steps} * 1500:{steps + 1} * 1500])")

    lm, engine = make_lm(model)
    result = long_marker_run(lm)
    assert result.answer == "marker-B"
    compact_calls = [c for c in engine.calls if SUMMARY_REQUEST in c[-1]["content"]]
    assert len(compact_calls) == 1
    after = engine.calls[engine.calls.index(compact_calls[0]) + 1]
    assert after[:2] == engine.calls[0][:2] and after[2]["content"].startswith("Summary:")


def test_a_failed_summary_call_does_not_end_the_run(make_lm):
    def model(messages):
        if SUMMARY_REQUEST in messages[-1]["content"]:
            raise RuntimeError("the provider is down for this one call")
        steps = sum(m["role"] == "assistant" for m in messages)
        if steps >= 3:
            return code("FINAL(context[1500:1510].strip())")
        return code(f"print(context[{steps} * 1500:{steps + 1} * 1500])")

    lm, engine = make_lm(model)
    result = long_marker_run(lm)
    assert (result.answer, result.finish_reason) == ("marker-B", "final")
    assert any(SUMMARY_REQUEST in c[-1]["content"] for c in engine.calls)  # it was tried, and failed
