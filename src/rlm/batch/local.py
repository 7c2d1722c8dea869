"""The embedded runner: N items at once in one asyncio event loop (`RLM.arun`), on a thread of its own.

Called by `rlm.batch` when no Ray cluster is asked for. Sandboxes are processes already, so one
event loop is enough to keep N runs busy; each distinct context is loaded once and shared by the
items running on it, and dropped when its last item is done.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from rlm.batch.budget import BatchBudget, BatchStats
from rlm.batch.execute import ItemPlan, arun_item
from rlm.batch.items import BatchItem
from rlm.batch.result import BatchResult

_END = object()


def run_local(
    items: list[BatchItem],
    plan: ItemPlan,
    *,
    concurrency: int,
    budget: BatchBudget,
    record: Callable[[BatchResult], None],
    stats: BatchStats,
) -> Iterator[BatchResult]:
    """Results as items finish; `record` runs on the loop's thread before the next item is scheduled."""
    results: queue.Queue[Any] = queue.Queue()
    running: dict[str, Any] = {}

    def main() -> None:
        async def run() -> None:
            running["task"] = asyncio.current_task()
            running["loop"] = asyncio.get_running_loop()

            def done(result: BatchResult) -> None:
                record(result)
                results.put(result)

            await _run_all(items, plan, concurrency, budget, done, stats)

        try:
            asyncio.run(run())
        except asyncio.CancelledError:
            pass
        except BaseException as exc:  # handed to the consumer's thread, raised there
            results.put(exc)
        finally:
            results.put(_END)

    thread = threading.Thread(target=main, name="rlm-batch-loop", daemon=True)
    thread.start()
    try:
        while (got := results.get()) is not _END:
            if isinstance(got, BaseException):
                raise got
            yield got
    finally:
        if thread.is_alive() and "task" in running:  # the consumer stopped early: cancel what runs
            running["loop"].call_soon_threadsafe(running["task"].cancel)
        thread.join()


async def _run_all(
    items: list[BatchItem],
    plan: ItemPlan,
    concurrency: int,
    budget: BatchBudget,
    done: Callable[[BatchResult], Any],
    stats: BatchStats,
) -> None:
    contexts = _SharedContexts(items, stats)
    pending = iter(items)

    async def worker() -> None:
        for item in pending:  # one iterator shared by the workers: each item is taken once
            if budget.exhausted:
                return
            context = await contexts.acquire(item)
            try:
                result = await arun_item(item, context, plan)
            finally:
                contexts.release(item)
            done(result)

    await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, len(items))))))


class _SharedContexts:
    """Each distinct context loaded once (off the loop), kept while items still need it."""

    def __init__(self, items: list[BatchItem], stats: BatchStats) -> None:
        self.needed = Counter(item.context.key for item in items)
        self.loaded: dict[str, asyncio.Future[Any]] = {}
        self.stats = stats

    async def acquire(self, item: BatchItem) -> Any:
        key = item.context.key
        if key not in self.loaded:
            self.stats.context_loads += 1
            self.loaded[key] = asyncio.ensure_future(asyncio.to_thread(item.context.load))
        try:
            return await asyncio.shield(self.loaded[key])
        except Exception as exc:  # the item records it; the other items go on
            return exc

    def release(self, item: BatchItem) -> None:
        key = item.context.key
        self.needed[key] -= 1
        if self.needed[key] <= 0:
            self.loaded.pop(key, None)
