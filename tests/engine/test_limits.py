"""Limits over the whole tree hold against hostile model code, whatever sandbox runs it.

Each test drives the real engine (scripted LMs, the local sandbox unless the test needs a sandbox
that misbehaves) and checks what a user sees: LM calls counted at the scripted engines, the
answer and finish reason, the `LimitReached` events, and the line the model reads.
"""

from __future__ import annotations

import asyncio
import threading
import time

from rlm import RLM, NodeFinished, NodeStarted, RLMConfig, RLMModule
from rlm.events import LimitReached
from rlm.sandbox.base import ExecutionResult
from rlm.sandbox.local import LocalSandbox
from tests.conftest import last_user_message


def code(src: str) -> str:
    return f"Running this.\n```python\n{src}\n```"


def is_step(messages: list[dict[str, str]]) -> bool:
    """REPL steps carry the instructions as a system message; plain sub-calls do not."""
    return messages[0]["role"] == "system"


def limits_hit(events: list[object]) -> set[str]:
    return {e.limit for e in events if isinstance(e, LimitReached)}


def swallowing(call: str, times: int, before: str = "") -> str:
    """Code that makes `call` again and again and ignores every error it raises."""
    loop = f"for i in range({times}):\n    try:\n        {call}\n        n += 1\n    except Exception:\n        pass"
    body = f"n = 0\n{loop}"
    return code(f"{before}{body}\nprint(n)")


SWALLOWING_LOOP = swallowing("llm_query('x')", 500)


# --- max_llm_calls: a hard cap over every call ---------------------------------------------------------
def test_a_loop_of_swallowed_subcalls_stays_within_the_call_budget(make_lm):
    root, root_engine = make_lm([SWALLOWING_LOOP, "FINAL(done)"])
    sub, sub_engine = make_lm(lambda m: "ok", model="scripted/sub")
    events: list[object] = []
    result = RLM(model=root, recursive_model=sub, max_llm_calls=5, on_event=events.append).run("q", "ctx")
    assert len(root_engine.calls) + len(sub_engine.calls) == 5  # 1 step + 3 sub-calls + the last answer
    assert (result.answer, result.finish_reason, result.llm_calls) == ("done", "budget", 5)
    assert "max_llm_calls" in limits_hit(events)
    told = last_user_message(root_engine.calls[1])
    assert "[limit max_llm_calls]" in told and "497 times" in told  # the model learns its code was refused


async def test_the_budget_is_a_hard_cap_in_async_runs_too(make_lm):
    root, root_engine = make_lm([SWALLOWING_LOOP, "FINAL(done)"])
    sub, sub_engine = make_lm(lambda m: "ok", model="scripted/sub")
    result = await RLM(model=root, recursive_model=sub, max_llm_calls=5).arun("q", "ctx")
    assert len(root_engine.calls) + len(sub_engine.calls) == 5
    assert result.finish_reason == "budget"


def test_children_out_of_budget_end_with_their_last_output_and_no_extra_call(make_lm):
    child_code = swallowing("llm_query('x')", 50, before="print('partial finding')\n")
    root, root_engine = make_lm([code("print(recursive_llm('look', context))"), "FINAL(done)"])
    sub, sub_engine = make_lm(lambda m: child_code if is_step(m) else "ok", model="scripted/sub")
    events: list[object] = []
    result = RLM(model=root, recursive_model=sub, max_llm_calls=4, on_event=events.append).run("q", "ctx")
    # root step, child step, one llm_query, root's last answer: the child asks for no last answer
    assert len(root_engine.calls) + len(sub_engine.calls) == 4
    child = next(e for e in events if isinstance(e, NodeFinished) and e.depth == 1)
    assert child.finish_reason == "budget"
    assert "no answer" in child.answer and "partial finding" in child.answer
    assert "partial finding" in last_user_message(root_engine.calls[1])
    assert result.answer == "done"


def test_recursive_calls_past_the_budget_start_no_sandbox(make_lm):
    counter = LiveCounter()
    loop = swallowing("recursive_llm('q', context)", 20)
    root, _ = make_lm([loop, "FINAL(done)"])
    sub, _ = make_lm(lambda m: code("FINAL('child')") if is_step(m) else "leaf", model="scripted/sub")
    module = RLMModule(RLMConfig(max_llm_calls=4), root, sub, sandbox_factory=counter.factory)
    prediction = module(query="q", context="abc")
    assert prediction.result.llm_calls == 4
    assert counter.started == 3  # the root and the two children the budget allowed


# --- max_step_seconds: host time on sub-calls counts ---------------------------------------------------
def test_a_step_past_its_wall_time_has_its_subcalls_refused(make_lm):
    loop = code(
        "n, err = 0, ''\nfor i in range(100):\n    try:\n        llm_query('x')\n        n += 1\n"
        "    except Exception as e:\n        err = str(e)\nprint(n, err)"
    )
    root, root_engine = make_lm([loop, "FINAL(done)"])
    sub, sub_engine = make_lm(lambda m: "ok", model="scripted/sub", delay_s=0.2)
    events: list[object] = []
    rlm = RLM(model=root, recursive_model=sub, max_step_seconds=1.0, on_event=events.append)
    started = time.perf_counter()
    result = rlm.run("q", "ctx")
    assert time.perf_counter() - started < 3.0  # 100 sub-calls of 0.2 s would take 20 s
    assert result.answer == "done"
    assert 3 <= len(sub_engine.calls) <= 6
    told = last_user_message(root_engine.calls[1])
    assert "this step's time is up" in told and "[limit max_step_seconds]" in told
    assert "max_step_seconds" in limits_hit(events)


def test_a_child_node_ends_within_its_parent_steps_time(make_lm):
    child_loop = swallowing("llm_query('x')", 100)
    root, root_engine = make_lm([code("print(recursive_llm('look', context))"), "FINAL(done)"])
    sub, _ = make_lm(lambda m: child_loop if is_step(m) else "ok", model="scripted/sub", delay_s=0.2)
    events: list[object] = []
    rlm = RLM(model=root, recursive_model=sub, max_step_seconds=1.0, on_event=events.append)
    started = time.perf_counter()
    result = rlm.run("q", "ctx")
    assert time.perf_counter() - started < 3.0
    child = next(e for e in events if isinstance(e, NodeFinished) and e.depth == 1)
    assert child.finish_reason == "time" and child.iterations == 1
    assert "no answer" in last_user_message(root_engine.calls[1])
    assert result.answer == "done"


# --- max_live_sandboxes: a cap over the tree, without deadlock -----------------------------------------
class LiveCounter:
    """Counts the sandboxes alive at once: from a node's first start to its close."""

    def __init__(self) -> None:
        self.live: set[int] = set()
        self.peak = self.started = 0
        self.lock = threading.Lock()

    def factory(self, limits):
        counter = self

        class Counted(LocalSandbox):
            def start(self):
                with counter.lock:
                    if id(self) not in counter.live:
                        counter.live.add(id(self))
                        counter.started += 1
                        counter.peak = max(counter.peak, len(counter.live))
                super().start()

            def close(self):
                super().close()
                with counter.lock:
                    counter.live.discard(id(self))

        return Counted(limits)


def fan_out(make_lm, items: int):
    root, _ = make_lm([code(f"r = recursive_llm_batched([('child', context)] * {items})\nFINAL(str(r.count('g')))")])

    def sub_reply(messages):
        if not is_step(messages):
            return "g"
        task = messages[1]["content"]
        return code("FINAL(recursive_llm('grand', context))") if "Query: child" in task else code("FINAL('g')")

    sub, _ = make_lm(sub_reply, model="scripted/sub")
    return root, sub


def test_a_recursive_fan_out_never_has_more_live_sandboxes_than_the_cap(make_lm):
    root, sub = fan_out(make_lm, 50)
    counter, events = LiveCounter(), []
    config = RLMConfig(max_depth=3, max_live_sandboxes=4, max_llm_calls=1000)
    module = RLMModule(config, root, sub, subscribers=[events.append], sandbox_factory=counter.factory)
    prediction = module(query="q", context="abc")
    assert prediction.answer == "50"  # every child answered: by a grandchild node or a plain call
    assert counter.peak <= 4
    assert counter.started > 4  # children did run as nodes, queued for free sandboxes
    assert "max_live_sandboxes" in limits_hit(events)


async def test_an_async_fan_out_respects_the_cap_and_completes(make_lm):
    root, sub = fan_out(make_lm, 12)
    counter = LiveCounter()
    config = RLMConfig(max_depth=3, max_live_sandboxes=3, max_llm_calls=1000)
    module = RLMModule(config, root, sub, sandbox_factory=counter.factory)
    prediction = await asyncio.wait_for(module.acall(query="q", context="abc"), timeout=30)
    assert prediction.answer == "12"
    assert counter.peak <= 3


def test_with_one_sandbox_children_are_answered_as_plain_calls(make_lm):
    root, sub = fan_out(make_lm, 3)
    events: list[object] = []
    result = RLM(model=root, recursive_model=sub, max_live_sandboxes=1, on_event=events.append).run("q", "abc")
    assert result.answer == "3"
    assert [e.depth for e in events if isinstance(e, NodeStarted)] == [0]


# --- sizes: clipped in the engine, for every sandbox ---------------------------------------------------
class FloodingSandbox:
    """A sandbox that clips nothing: a user-registered one, or a compromised worker."""

    def __init__(self, limits) -> None:
        self.steps = 0

    def start(self) -> None: ...

    def load(self, context) -> None: ...

    def close(self) -> None: ...

    def execute(self, code, handler) -> ExecutionResult:
        self.steps += 1
        if self.steps == 1:
            return ExecutionResult(output="o" * 1_000_000, error="E" * 5_000_000)
        return ExecutionResult(output="", final_answer="a" * 500_000)


def test_output_errors_and_answers_are_clipped_whatever_the_sandbox(make_lm):
    lm, engine = make_lm([code("flood()"), code("FINAL(big)")])
    events: list[object] = []
    config = RLMConfig(max_output_chars=1000, max_answer_chars=2000)
    module = RLMModule(config, lm, subscribers=[events.append], sandbox_factory=FloodingSandbox)
    answer = module(query="q", context="ctx").answer
    assert len(last_user_message(engine.calls[1])) < 4000
    assert 2000 <= len(answer) < 2100 and "characters cut" in answer
    assert {"max_output_chars", "max_answer_chars"} <= limits_hit(events)


def test_a_huge_exception_message_does_not_reach_later_prompts(make_lm):
    lm, engine = make_lm([code("raise ValueError('e' * 2_000_000)"), "FINAL(ok)"])
    assert RLM(model=lm, max_output_chars=1000).completion("q", "ctx") == "ok"
    assert len(last_user_message(engine.calls[1])) < 5000


def test_a_sub_prompt_over_sub_prompt_chars_is_refused_before_sending(make_lm):
    root, root_engine = make_lm([code("print(llm_query('p' * 50_000))"), "FINAL(ok)"])
    sub, sub_engine = make_lm(lambda m: "short", model="scripted/sub")
    events: list[object] = []
    RLM(model=root, recursive_model=sub, sub_prompt_chars=1000, on_event=events.append).run("q", "ctx")
    assert sub_engine.calls == []
    assert "sub_prompt_chars" in limits_hit(events)
    told = last_user_message(root_engine.calls[1])
    assert "50000 characters is over sub_prompt_chars (1000 characters)" in told and "split the slice" in told


def test_oversized_items_of_a_batch_are_refused_one_by_one(make_lm):
    root, root_engine = make_lm([code("print(llm_query_batched(['short', 'p' * 5000]))"), "FINAL(ok)"])
    sub, sub_engine = make_lm(lambda m: "fine", model="scripted/sub")
    RLM(model=root, recursive_model=sub, sub_prompt_chars=1000).run("q", "ctx")
    assert len(sub_engine.calls) == 1
    told = last_user_message(root_engine.calls[1])
    assert "'fine', 'Error: LimitError:" in told and "split the slice" in told


def test_a_sub_prompt_past_the_sub_models_known_window_is_refused(make_lm):
    from rlm.engine.limits import CHARS_PER_TOKEN, prompt_cap

    class Small:
        model = "openai/gpt-4o-mini"  # DSPy's bundled metadata: a 128,000-token window

    cap, why = prompt_cap(10_000_000, Small())
    assert cap == 128_000 * CHARS_PER_TOKEN and "window of 128000 tokens" in why
    assert prompt_cap(1000, Small()) == (1000, "sub_prompt_chars")


def test_a_batched_call_with_too_many_items_is_refused_without_calls(make_lm):
    root, root_engine = make_lm([code("r = llm_query_batched(['x'] * 300)"), "FINAL(ok)"])
    sub, sub_engine = make_lm(lambda m: "short", model="scripted/sub")
    events: list[object] = []
    RLM(model=root, recursive_model=sub, max_batch_items=256, on_event=events.append).run("q", "ctx")
    assert sub_engine.calls == []
    assert "at most 256 items" in last_user_message(root_engine.calls[1])
    assert "max_batch_items" in limits_hit(events)


def test_verbose_progress_shows_each_limit_that_trips(make_lm, capsys):
    root, _ = make_lm([code("r = llm_query_batched(['x'] * 3)"), "FINAL(ok)"])
    RLM(model=root, max_batch_items=2, verbose=True).run("q", "ctx")
    assert "! max_batch_items: llm_query_batched takes at most 2 items" in capsys.readouterr().err


# --- limits the sandbox enforces are events too --------------------------------------------------------
def test_a_step_stopped_by_exec_timeout_or_the_memory_cap_is_an_event(make_lm):
    root, _ = make_lm(
        [
            code("while True:\n    pass"),
            code("hog = [0] * (10 ** 9)"),
            code("FINAL('done')"),
        ]
    )
    events: list[object] = []
    result = RLM(model=root, exec_timeout=1.0, memory_limit_mb=256, on_event=events.append).run("q", "abc")
    assert result.answer == "done"
    hits = [e for e in events if isinstance(e, LimitReached)]
    assert {e.limit for e in hits} == {"exec_timeout", "memory_limit_mb"}
    assert all(e.node_id == hits[0].node_id for e in hits)


def test_a_child_refused_for_its_query_gives_its_sandbox_slot_back(make_lm):
    refused = f"recursive_llm('{'q' * 2000}', context)"
    tries = f"for i in range(5):\n    try:\n        {refused}\n    except Exception:\n        pass"
    root, root_engine = make_lm([code(tries), code("print(recursive_llm('short', context))"), "FINAL(ok)"])
    sub, _ = make_lm(lambda m: code("FINAL('child')") if m[0]["role"] == "system" else "plain", model="scripted/sub")
    events: list[object] = []
    config = dict(sub_prompt_chars=1000, max_live_sandboxes=2, on_event=events.append)
    RLM(model=root, recursive_model=sub, **config).run("q", "ctx")
    # Had the five refused queries kept their slots, the short one would have run as a plain call.
    assert "child" in last_user_message(root_engine.calls[2])
    assert [e.depth for e in events if isinstance(e, NodeStarted)] == [0, 1]
