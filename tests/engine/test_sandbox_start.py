"""A node's sandbox starts while its first request is out, and a sandbox that cannot start still fails the node."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import dspy
import pytest

from rlm.engine.module import RLMModule
from rlm.errors import SandboxError
from rlm.sandbox.base import ExecutionResult, SandboxLimits, SubcallHandler
from rlm.testing.scripted import AsyncScriptedEngine, ScriptedEngine
from tests.meeting import WAIT_S

START_S = 0.4


class StartMeetsFirstRequest:
    """The sandbox's start and the first request, each waiting (up to WAIT_S) for the other to begin
    (tests/meeting.py's `Meeting` holds requests until several are out at once).

    Run at the same time they meet at once, however loaded the machine; run one after the other,
    the first waits in vain and says so. (A wall-clock bound, "both in under 0.7 s", failed on a
    loaded machine.)"""

    def __init__(self) -> None:
        self.start_begun = threading.Event()
        self.request_out = threading.Event()
        self.start_saw_the_request = False  # the request went out before the start ended
        self.request_saw_the_start = False  # the start began before the request's reply came back


class FirstRequestEngine(ScriptedEngine):
    """A scripted LM whose requests wait (up to WAIT_S) for the sandbox's start to begin."""

    def __init__(self, replies: Any, meeting: StartMeetsFirstRequest) -> None:
        super().__init__(replies)
        self.meeting = meeting

    def complete(self, request: Any) -> Any:
        self.meeting.request_out.set()
        self.meeting.request_saw_the_start = self.meeting.start_begun.wait(WAIT_S)
        return super().complete(request)


class AsyncFirstRequestEngine(AsyncScriptedEngine):
    async def complete(self, request: Any) -> Any:
        meeting = self.sync.meeting  # type: ignore[attr-defined]
        meeting.request_out.set()
        deadline = time.monotonic() + WAIT_S
        while not meeting.start_begun.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)  # never block the loop: the start may need it
        meeting.request_saw_the_start = meeting.start_begun.is_set()
        return await super().complete(request)


class SlowSandbox:
    """Takes START_S to start (a worker process, a remote sandbox), or with `meeting` until the first
    request is out; `FINAL(...)` code answers."""

    def __init__(self, fail: bool = False, meeting: StartMeetsFirstRequest | None = None) -> None:
        self.fail = fail
        self.meeting = meeting
        self.events: list[str] = []

    def start(self) -> None:
        if self.meeting is None:
            time.sleep(START_S)
        else:
            self.meeting.start_begun.set()
            self.meeting.start_saw_the_request = self.meeting.request_out.wait(WAIT_S)
        if self.fail:
            raise SandboxError("the sandbox worker did not start")
        self.events.append("started")

    def load(self, context: Any) -> None:
        self.events.append("loaded")

    def execute(self, code: str, handler: SubcallHandler) -> ExecutionResult:
        self.events.append("executed")
        return ExecutionResult(output="", final_answer=code.split("'")[1] if "FINAL" in code else None)

    def close(self) -> None:
        self.events.append("closed")


def module(lm: Any, box: SlowSandbox) -> RLMModule:
    def factory(limits: SandboxLimits) -> SlowSandbox:
        return box

    return RLMModule(lm=lm, sandbox_factory=factory)


def answer_with(program: RLMModule, driver: str) -> Any:
    """The program's answer to one question, run by the `driver` ("sync" or "async")."""
    if driver == "sync":
        return program(query="q", context="ctx").answer
    return asyncio.run(program.acall(query="q", context="ctx")).answer


@pytest.mark.parametrize("driver", ["sync", "async"])
def test_the_sandbox_starts_while_the_first_request_is_out(driver):
    meeting = StartMeetsFirstRequest()
    engine = FirstRequestEngine(["```python\nFINAL('yes')\n```"], meeting)
    lm = dspy.LM(
        "scripted/root", engine=engine, async_engine=AsyncFirstRequestEngine(engine), cache=False, num_retries=0
    )
    box = SlowSandbox(meeting=meeting)
    assert answer_with(module(lm, box), driver) == "yes"
    assert box.events == ["started", "loaded", "executed", "closed"]
    assert meeting.start_saw_the_request and meeting.request_saw_the_start, (
        "start and first request ran one after the other"
    )


@pytest.mark.parametrize("driver", ["sync", "async"])
def test_a_sandbox_that_cannot_start_fails_the_node_even_when_no_code_ran(make_lm, driver):
    lm, _ = make_lm(["FINAL(plain)", "FINAL(plain)"])  # the first is refused as a guess
    box = SlowSandbox(fail=True)
    program = module(lm, box)
    with pytest.raises(SandboxError, match="did not start"):
        answer_with(program, driver)
    assert box.events == ["closed"]


@pytest.mark.parametrize("driver", ["sync", "async"])
def test_a_failed_first_request_waits_for_the_start_before_closing(make_lm, driver):
    def broken(messages: list[dict[str, str]]) -> str:
        raise RuntimeError("provider down")

    lm, _ = make_lm(broken)
    box = SlowSandbox()
    program = module(lm, box)
    with pytest.raises(Exception, match="provider down"):
        answer_with(program, driver)
    assert box.events == ["started", "loaded", "closed"]
