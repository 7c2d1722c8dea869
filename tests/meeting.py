"""A scripted LM whose requests meet: proof that requests ran at the same time, without a clock.

A wall-clock bound ("two runs of 0.3 s calls take under 1.1 s") checks concurrency only on a quiet
machine; on a loaded one (CI: ~1,500 tests on 2 cores) it fails. Here each request is held until
`expected` requests have been out at once (or WAIT_S passed): requests that really run concurrently
meet at once, however loaded the machine, and sequential ones never do (`peak` stays below).
(tests/engine/test_sandbox_start.py's `StartMeetsFirstRequest` is the same idea for a sandbox's start
and the first request, with this WAIT_S.)
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import dspy

from rlm.testing.scripted import AsyncScriptedEngine, ScriptedEngine

WAIT_S = 20.0


class Meeting(AsyncScriptedEngine):
    """The async engine of a scripted LM that holds each request until `expected` have been out at once."""

    def __init__(self, sync: ScriptedEngine, expected: int) -> None:
        super().__init__(sync)
        self.expected, self.now, self.peak = expected, 0, 0
        self.lock = threading.Lock()

    async def complete(self, request: Any) -> Any:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
        try:
            deadline = time.monotonic() + WAIT_S
            while self.peak < self.expected and time.monotonic() < deadline:
                await asyncio.sleep(0.01)  # never block the loop: the other requests need it
            return await super().complete(request)
        finally:
            with self.lock:
                self.now -= 1


def meeting_lm(replies: Any, expected: int, model: str = "scripted/root") -> tuple[dspy.LM, Meeting]:
    """A scripted LM (async runs only) whose requests wait for `expected` of them to be out at once."""
    engine = ScriptedEngine(replies)
    meeting = Meeting(engine, expected)
    return dspy.LM(model, engine=engine, async_engine=meeting, cache=False, num_retries=0), meeting
