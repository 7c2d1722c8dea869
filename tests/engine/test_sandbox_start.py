"""A node's sandbox starts while its first request is out, and a sandbox that cannot start still fails the node."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from rlm.engine.module import RLMModule
from rlm.errors import SandboxError
from rlm.sandbox.base import ExecutionResult, SandboxLimits, SubcallHandler

START_S = 0.4


class SlowSandbox:
    """Takes START_S to start (a worker process, a remote sandbox); `FINAL(...)` code answers."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.events: list[str] = []

    def start(self) -> None:
        time.sleep(START_S)
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


@pytest.mark.parametrize("driver", ["sync", "async"])
def test_the_sandbox_starts_while_the_first_request_is_out(make_lm, driver):
    lm, _ = make_lm(["```python\nFINAL('yes')\n```"], delay_s=START_S)
    box = SlowSandbox()
    program = module(lm, box)
    started = time.perf_counter()
    if driver == "sync":
        answer = program(query="q", context="ctx").answer
    else:
        answer = asyncio.run(program.acall(query="q", context="ctx")).answer
    took = time.perf_counter() - started
    assert answer == "yes"
    assert box.events == ["started", "loaded", "executed", "closed"]
    assert took < 2 * START_S - 0.1, f"start and first request ran one after the other ({took:.2f} s)"


@pytest.mark.parametrize("driver", ["sync", "async"])
def test_a_sandbox_that_cannot_start_fails_the_node_even_when_no_code_ran(make_lm, driver):
    lm, _ = make_lm(["FINAL(plain)", "FINAL(plain)"])  # the first is refused as a guess
    box = SlowSandbox(fail=True)
    program = module(lm, box)
    with pytest.raises(SandboxError, match="did not start"):
        if driver == "sync":
            program(query="q", context="ctx")
        else:
            asyncio.run(program.acall(query="q", context="ctx"))
    assert box.events == ["closed"]


@pytest.mark.parametrize("driver", ["sync", "async"])
def test_a_failed_first_request_waits_for_the_start_before_closing(make_lm, driver):
    def broken(messages: list[dict[str, str]]) -> str:
        raise RuntimeError("provider down")

    lm, _ = make_lm(broken)
    box = SlowSandbox()
    program = module(lm, box)
    with pytest.raises(Exception, match="provider down"):
        if driver == "sync":
            program(query="q", context="ctx")
        else:
            asyncio.run(program.acall(query="q", context="ctx"))
    assert box.events == ["started", "loaded", "closed"]
