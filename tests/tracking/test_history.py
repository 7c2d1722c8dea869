"""LLM-call history: complete, consistent with the result, small, and saved on failure."""

from __future__ import annotations

import json

from rlm import RLM


def test_history_holds_every_lm_call_with_its_details(multi_depth_run):
    rlm, result, tmp_path = multi_depth_run
    history = rlm.get_history()
    assert len(history) == result.llm_calls
    assert sum(r["prompt_tokens"] for r in history) == result.prompt_tokens
    assert sum(r["completion_tokens"] for r in history) == result.completion_tokens
    assert {r["depth"] for r in history} == {0, 1}
    assert {r["purpose"] for r in history} == {"step", "llm_query"}
    for record in history:
        assert set(record) >= {"time", "node_id", "depth", "model", "messages", "output", "prompt_tokens",
                               "completion_tokens", "cost", "latency_s", "error"}  # fmt: skip
    saved = json.loads((tmp_path / "history.json").read_text())
    assert saved == history


def test_history_prompts_hold_descriptions_not_contexts(make_lm, tmp_path):
    lm, _ = make_lm(["```python\nx = len(context)\n```", "FINAL(x)"])
    path = tmp_path / "history.json"
    RLM(model=lm, history_output_path=path).completion("q", "z" * 2_000_000)
    assert path.stat().st_size < 30_000


def test_history_accumulates_across_runs_until_cleared(make_lm):
    lm, _ = make_lm(["FINAL(a)", "FINAL(b)"])
    rlm = RLM(model=lm, enable_history=True)
    rlm.completion("q1", "c")
    rlm.completion("q2", "c")
    assert len(rlm.get_history()) == 2
    rlm.clear_history()
    assert rlm.get_history() == []
