"""One run's workers share an account of the message bytes the host holds for them."""

from __future__ import annotations

from rlm import RLM
from rlm.sandbox.base import SandboxLimits
from rlm.sandbox.host_memory import BASE_FRAME_BYTES, HostFrameBudget, run_budget_bytes
from rlm.sandbox.local import LocalSandbox
from rlm.testing import scripted_lm


def code(src: str) -> str:
    return f"```python\n{src}\n```"


def test_the_account_refuses_what_would_pass_its_limit_and_counts_nothing_then():
    budget = HostFrameBudget(100)
    assert budget.take(60) and not budget.take(41) and budget.held_bytes == 60
    budget.give(60)
    assert budget.take(100) and budget.held_bytes == 100


def test_a_frame_counted_again_at_a_larger_size_keeps_its_bytes_counted_in_between():
    # A channel counts a frame by stages (its bytes, then decoded, then parsed): each stage replaces
    # the last in one step, so no other worker can take the bytes the frame still occupies.
    budget = HostFrameBudget(100)
    assert budget.take(30)  # another worker's frame
    assert budget.exchange(0, 40) and budget.held_bytes == 70
    assert budget.exchange(40, 70) and budget.held_bytes == 100
    assert not budget.exchange(70, 71) and budget.held_bytes == 30  # refused: the frame's count is given back


def test_the_default_leaves_room_for_two_copies_of_the_context_per_level_at_its_decoded_width():
    # twice over: a frame counts at its peak, two copies, while it is decoded and parsed
    assert run_budget_bytes(1_000, max_depth=2) == 2 * (BASE_FRAME_BYTES + 6_000)
    assert run_budget_bytes(1_000, max_depth=2, ascii_only=False) == 2 * (BASE_FRAME_BYTES + 24_000)


def test_a_call_past_the_runs_budget_restarts_only_that_worker_and_frees_its_count():
    budget = HostFrameBudget(400_000)  # a frame counts twice at its peak: 100,000 bytes fit, 300,000 do not
    seen = []

    def echo(fn, args, kwargs):
        seen.append(len(args[0]))
        return "ok"

    with LocalSandbox(SandboxLimits(exec_timeout=5, frame_budget=budget)) as box:
        box.load("context")
        fits = box.execute("x = 1\nprint(llm_query('a' * 100_000))", echo)
        assert fits.error is None and fits.output.strip() == "ok"
        assert budget.held_bytes == 0  # answered: its frame no longer counts
        too_big = box.execute("print(llm_query('a' * 300_000))", echo)
        assert too_big.restarted and "bytes the host keeps for them" in (too_big.error or "")
        assert budget.held_bytes == 0
        after = box.execute("print(len(context))", echo)
        assert after.output.strip() == "7"
    assert seen == [100_000]  # the refused call never reached the host function


def test_a_sessions_own_worker_counts_against_the_account_its_questions_share():
    # The session's root worker had only its per-frame cap (64 MiB plus twice the context), so
    # question after question it could make the host hold frames the run's account never saw.
    steps = [
        code("print(recursive_llm('q', ['ab'] * 2_000_000))"),  # 12 MB, ~140 MB once parsed
        code("FINAL('after')"),
    ]
    lm, _ = scripted_lm(lambda messages: steps.pop(0) if steps else code("FINAL('after')"))
    sub, _ = scripted_lm(lambda messages: code("FINAL('sub')"), model="scripted/sub")
    with RLM(model=lm, recursive_model=sub, exec_timeout=20.0, max_iterations=2).session("ctx") as session:
        result = session.run("q")
        assert result.answer == "after" and "bytes the host keeps for them" in (result.trajectory[0].error or "")
        assert session._frame_budget.held_bytes == 0
