"""The tree-wide cap on LM requests in flight (`max_concurrency`), for both drivers.

Every LM call of a run -- root steps, children's steps, sub-calls, batched items at any depth --
holds one slot only while its request is out, so a parent waiting for its children never holds
one, and nested batches cannot multiply the load on the provider. Used by `engine.calls`.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections.abc import AsyncIterator, Iterator


class RequestSlots:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._threads = threading.BoundedSemaphore(limit)
        # asyncio semaphores belong to one event loop; a run is driven on one, but keep them apart.
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        with self._threads:
            yield

    @contextlib.asynccontextmanager
    async def ahold(self) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        with self._lock:
            slots = self._loops.get(loop)
            if slots is None:
                slots = self._loops[loop] = asyncio.Semaphore(self.limit)
        async with slots:
            yield
