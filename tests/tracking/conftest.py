"""A real multi-depth run (scripted LM) shared by the tracking tests."""

from __future__ import annotations

import pytest

from rlm import RLM

ROOT_SCRIPT = [
    "Split it.\n```python\nhalves = [context[:len(context)//2], context[len(context)//2:]]\n"
    "counts = recursive_llm_batched([('count the a', h) for h in halves])\nprint(counts)\n```",
    "```python\nnote = llm_query('say ok')\nprint(note)\n```",
    "FINAL(total is 6)",
]
CHILD_SCRIPT = [
    "```python\nprint(len(context))\n```",
    "```python\nFINAL(str(context.count('a')))\n```",
]


def child_reply(messages):
    """Children answer by position in their own conversation: explore, then FINAL."""
    steps_done = sum(1 for m in messages if m["role"] == "assistant")
    if not messages[-1]["content"].startswith(("Query:", "Output")):
        return "ok"  # a plain llm_query
    return CHILD_SCRIPT[min(steps_done, 1)]


@pytest.fixture
def multi_depth_run(make_lm, tmp_path):
    root, _ = make_lm(list(ROOT_SCRIPT))
    sub, _ = make_lm(child_reply, model="scripted/sub")
    rlm = RLM(
        model=root,
        recursive_model=sub,
        max_depth=3,
        graph_output_path=tmp_path / "graph.html",
        history_output_path=tmp_path / "history.json",
    )
    result = rlm.run("How many a?", "aaabbbaaabbb")
    return rlm, result, tmp_path
