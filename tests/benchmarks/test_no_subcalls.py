"""The "RLM without sub-calls" ablation: same engine, no word of sub-calls, and every sub-call refused."""

from __future__ import annotations

from rlm import RLM
from rlm.benchmarks.no_subcalls import OFF_MESSAGE, instructions_without_subcalls, without_subcalls
from rlm.testing.scripted import scripted_lm


def test_instructions_lose_every_sub_call_line_and_keep_their_numbering():
    text = "Intro.\n- `llm_query(p)`: ask.\n- `FINAL(x)`: end.\n1. Look.\n2. Ask a sub-model per chunk.\n3. Finish."
    result = instructions_without_subcalls(text)
    assert "llm_query" not in result and "sub-model per chunk" not in result
    assert "1. Look.\n2. Finish." in result and "- `FINAL(x)`: end." in result
    assert "not available in this run" in result


def test_a_sub_call_fails_in_the_models_code_and_the_run_goes_on():
    lm, engine = scripted_lm([
        "```python\nprint(llm_query('what is in ' + context[:20]))\n```",
        "```python\nanswer = str(len(context))\nprint(answer)\n```",
        "```python\nFINAL_VAR('answer')\n```",
    ])  # fmt: skip
    result = without_subcalls(RLM(model=lm)).run("How long is the context?", "word " * 200)
    assert OFF_MESSAGE in (result.trajectory[0].error or "")
    assert result.answer == "1000" and result.llm_calls == 3  # no sub-model was asked
    assert "llm_query(" not in engine.calls[0][0]["content"]


def test_the_full_rlm_still_offers_sub_calls():
    lm, engine = scripted_lm(["```python\nx = llm_query('hi')\nprint(x)\n```", "```python\nFINAL_VAR('x')\n```"])
    sub, _ = scripted_lm(["hello"], model="scripted/sub")
    result = RLM(model=lm, recursive_model=sub).run("Say hi.", "word " * 200)
    assert result.answer == "hello" and "llm_query(" in engine.calls[0][0]["content"]
