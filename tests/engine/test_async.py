"""acompletion is really asynchronous: LM calls are awaited and two runs overlap in time."""

from __future__ import annotations

import asyncio
import contextlib
import time

from rlm import RLM
from tests.meeting import meeting_lm


async def test_two_acompletions_in_one_loop_overlap():
    # Each run gets its own two replies (code, then FINAL once an output came back): a shared list
    # of replies would hand them out in whatever order the runs ask.
    lm, meeting = meeting_lm(lambda m: "FINAL(done)" if len(m) > 2 else "```python\nx = len(context)\n```", 2)
    rlm = RLM(model=lm)
    answers = await asyncio.gather(rlm.acompletion("q1", "context one"), rlm.acompletion("q2", "context two"))
    assert answers == ["done", "done"]
    assert meeting.peak == 2  # a request of each run was out at once: sequential runs never overlap


async def test_event_loop_stays_responsive_while_code_runs(make_lm):
    lm, _ = make_lm(["```python\ntotal = sum(range(3_000_000))\n```", "FINAL(ok)"])
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    assert await RLM(model=lm).acompletion("q", "ctx") == "ok"
    task.cancel()
    assert ticks > 0


async def test_async_batched_subcalls_are_awaited_concurrently(make_lm):
    root, _ = make_lm(["```python\nr = llm_query_batched(['a', 'b', 'c', 'd'])\nFINAL(','.join(r))\n```"])
    sub, meeting = meeting_lm(lambda m: m[-1]["content"].upper(), 4, model="scripted/sub")
    rlm = RLM(model=root, recursive_model=sub, max_concurrency=4)
    assert await rlm.acompletion("q", "ctx") == "A,B,C,D"
    assert meeting.peak == 4  # all four were out at once


async def test_async_recursion_runs_child_nodes(make_lm):
    root, _ = make_lm(["```python\nFINAL(recursive_llm('inner', context[:3]))\n```"])
    sub, _ = make_lm(["```python\nFINAL(context.upper())\n```"], model="scripted/sub")
    result = await RLM(model=root, recursive_model=sub).arun("q", "abcdef")
    assert result.answer == "ABC"
    assert result.depth == 1


def test_step_stop_sequences_reach_the_model_in_both_drivers(make_lm):
    import asyncio

    from rlm import RLMConfig, RLMModule

    for driver in ("sync", "async"):
        lm, engine = make_lm(["```python\nx = 1\n", "FINAL(done)"])
        program = RLMModule(RLMConfig(step_stop=("\n```\n",)), lm=lm)
        if driver == "sync":
            program(query="q", context="ctx")
        else:
            asyncio.run(program.acall(query="q", context="ctx"))
        assert engine.stops == [("\n```\n",), ("\n```\n",)], driver


async def test_cancelling_arun_stops_its_sub_calls(make_lm):
    # The step's code would go on asking; once the run is cancelled, no further sub-call may reach
    # the model, and the step's own code ends (its sub-calls fail) so the sandbox closes.
    code = "answers = []\nfor i in range(8):\n    answers.append(llm_query(f'q{i}'))\nFINAL(len(answers))"
    root, _ = make_lm([f"```python\n{code}\n```"])
    sub, sub_engine = make_lm(lambda m: "ok", model="scripted/sub", delay_s=0.3)
    task = asyncio.create_task(RLM(model=root, recursive_model=sub).arun("q", "ctx"))
    while not sub_engine.calls:
        await asyncio.sleep(0.01)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    asked = len(sub_engine.calls)
    await asyncio.sleep(0.8)  # time for more of the loop's calls, were they still made
    assert len(sub_engine.calls) == asked <= 2  # the one under way when cancelled (and a racing next)


async def test_a_cancelled_run_ends_its_child_nodes_before_it_returns(make_lm):
    from rlm.events import NodeFinished, NodeStarted

    root, _ = make_lm(["```python\nFINAL(recursive_llm('inner', context[:3]))\n```"])
    child, child_engine = make_lm(lambda m: "```python\nx = 1\n```", model="scripted/sub", delay_s=0.3)
    events: list[object] = []
    task = asyncio.create_task(RLM(model=root, recursive_model=child, on_event=events.append).arun("q", "abcdef"))
    while not child_engine.calls:
        await asyncio.sleep(0.01)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    started = [e.node_id for e in events if isinstance(e, NodeStarted)]
    finished = [e.node_id for e in events if isinstance(e, NodeFinished)]
    assert len(started) == 2 and finished == started[::-1]  # the child ended, and said so, first


async def test_a_cancelled_run_stops_its_spinning_step_at_once(make_lm):
    # A step that only spins used to hold a cancelled run (an item_timeout, a task's cancel) until
    # its own limit, exec_timeout + 1 s; its worker is now killed when the run is cancelled.
    root, _ = make_lm(["```python\nwhile True:\n    pass\n```"])
    seen: list[object] = []
    started = time.perf_counter()
    task = asyncio.create_task(RLM(model=root, exec_timeout=120.0, on_event=seen.append).arun("q", "ctx"))
    await asyncio.sleep(1.5)  # the step is spinning
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert time.perf_counter() - started < 60  # far below the step's 120 s limit
