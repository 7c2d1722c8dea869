"""`max_concurrency` caps LM requests in flight across the whole tree, at every depth."""

from __future__ import annotations

import asyncio
import threading
import time

import dspy

from rlm import RLMConfig, RLMModule
from rlm.testing.scripted import AsyncScriptedEngine, ScriptedEngine


def code(src: str) -> str:
    return f"Running this.\n```python\n{src}\n```"


class InFlight:
    """Counts the requests that are out at once, for the sync and the async engine of one LM."""

    def __init__(self) -> None:
        self.now, self.peak = 0, 0
        self.lock = threading.Lock()

    def enter(self) -> None:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)

    def leave(self) -> None:
        with self.lock:
            self.now -= 1


class CountingEngine(ScriptedEngine):
    def __init__(self, reply, counter: InFlight) -> None:
        super().__init__(reply)
        self.counter = counter

    def complete(self, request):
        self.counter.enter()
        try:
            time.sleep(0.05)
            return super().complete(request)
        finally:
            self.counter.leave()


class AsyncCountingEngine(AsyncScriptedEngine):
    async def complete(self, request):
        counter = self.sync.counter  # type: ignore[attr-defined]
        counter.enter()
        try:
            await asyncio.sleep(0.05)
            return await super().complete(request)
        finally:
            counter.leave()


def tree_of_batches(make_lm):
    """Root: 4 children at once; each child: a batch of 6 sub-calls."""
    root_code = "FINAL(str(len(recursive_llm_batched([('child', context)] * 4))))"
    root, _ = make_lm([code(root_code)], model="scripted/root")

    def sub_reply(messages):
        if messages[0]["role"] != "system":
            return "ok"  # a plain sub-call
        return code("FINAL(str(len(llm_query_batched(['p'] * 6))))")

    counted = InFlight()
    engine = CountingEngine(sub_reply, counted)
    sub = dspy.LM("scripted/sub", engine=engine, async_engine=AsyncCountingEngine(engine), cache=False, num_retries=0)
    return root, sub, counted


def test_nested_batches_never_exceed_the_tree_wide_cap(make_lm):
    root, sub, counted = tree_of_batches(make_lm)
    config = RLMConfig(max_depth=2, max_concurrency=3, max_llm_calls=1000)
    assert RLMModule(config, root, sub)(query="q", context="abc").answer == "4"
    assert counted.peak <= 3
    assert counted.peak >= 2  # and the requests did overlap


async def test_the_cap_holds_in_async_runs(make_lm):
    root, sub, counted = tree_of_batches(make_lm)
    config = RLMConfig(max_depth=2, max_concurrency=3, max_llm_calls=1000)
    assert (await RLMModule(config, root, sub).acall(query="q", context="abc")).answer == "4"
    assert 2 <= counted.peak <= 3
