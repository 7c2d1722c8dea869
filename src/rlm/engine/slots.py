"""The cap on live sandboxes across one tree: each node holds a slot while its sandbox lives.

`HostFunctions` asks for a child's slot before starting it; a full tree queues the child, or, when
waiting could deadlock, tells the caller to answer it as a plain sub-LM call (as at `max_depth`).
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable

from rlm.engine.limits import LimitError, seconds_left


class _Holder:
    """A node holding a slot: how many of its children hold slots, how many of its calls wait."""

    def __init__(self, parent: _Holder | None) -> None:
        self.parent = parent
        self.children = 0
        self.waiting = 0


class Slot:
    """One node's place among the live sandboxes; `release` when its sandbox is closed."""

    def __init__(self, slots: SandboxSlots, holder: _Holder) -> None:
        self._slots, self._holder = slots, holder
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._slots._release(self._holder)


class _Waiter:
    def __init__(self, parent: _Holder, future: asyncio.Future[None] | None) -> None:
        self.parent = parent
        self.granted: _Holder | None = None
        self.event = threading.Event()
        self.future = future
        self.loop = future.get_loop() if future is not None else None

    def wake(self) -> None:
        self.event.set()
        if self.loop is not None and self.future is not None:
            self.loop.call_soon_threadsafe(_resolve, self.future)


def _out_of_time() -> Slot:
    raise LimitError(
        "max_step_seconds", "the step's time ran out while this call waited for a free sandbox (max_live_sandboxes)"
    )


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class SandboxSlots:
    """At most `limit` live sandboxes in a tree, handed out first come, first served.

    Deadlock: every node holds its slot while it waits for its children, so a tree whose slots are
    all held by waiting nodes would wait forever. A call waits only while some *other* holder is
    still working (it has no children holding slots and no calls waiting); that holder finishes
    and passes its slot on, and each slot handed out makes a new working holder, so while anyone
    waits, someone works. When no other holder is working the call does not wait: the caller runs
    it as a plain sub-LM call.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._holders: list[_Holder] = []
        self._queue: deque[_Waiter] = deque()
        self._lock = threading.Lock()

    def root(self) -> Slot:
        """The root's slot: taken first in its tree, so always free."""
        with self._lock:
            holder = _Holder(None)
            self._holders.append(holder)
        return Slot(self, holder)

    def acquire(self, parent: Slot, deadline: float | None, on_wait: Callable[[], None]) -> Slot | None:
        """A slot for a child of `parent` (waiting up to `deadline`), or None: answer it plainly."""
        waiter = self._enter(parent._holder, None)
        if not isinstance(waiter, _Waiter):
            return waiter
        on_wait()
        waiter.event.wait(seconds_left(deadline))
        return self._settle(waiter) or _out_of_time()

    async def aacquire(self, parent: Slot, deadline: float | None, on_wait: Callable[[], None]) -> Slot | None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiter = self._enter(parent._holder, future)
        if not isinstance(waiter, _Waiter):
            return waiter
        on_wait()
        try:
            await asyncio.wait_for(future, seconds_left(deadline))
        except asyncio.TimeoutError:
            pass
        except BaseException:  # cancelled: give back a slot granted meanwhile, or leave the queue
            slot = self._settle(waiter)
            if slot is not None:
                slot.release()
            raise
        return self._settle(waiter) or _out_of_time()

    # --- internals -----------------------------------------------------------------------------------
    def _enter(self, parent: _Holder, future: asyncio.Future[None] | None) -> Slot | _Waiter | None:
        with self._lock:
            if len(self._holders) < self.limit:
                return Slot(self, self._grant(parent))
            working = any(h is not parent and h.children == 0 and h.waiting == 0 for h in self._holders)
            if not working:
                return None
            parent.waiting += 1
            waiter = _Waiter(parent, future)
            self._queue.append(waiter)
            return waiter

    def _settle(self, waiter: _Waiter) -> Slot | None:
        """The slot granted to `waiter`; if none was, it leaves the queue (its time ran out)."""
        with self._lock:
            if waiter.granted is not None:
                return Slot(self, waiter.granted)
            self._queue.remove(waiter)
            waiter.parent.waiting -= 1
        return None

    def _grant(self, parent: _Holder) -> _Holder:
        holder = _Holder(parent)
        parent.children += 1
        self._holders.append(holder)
        return holder

    def _release(self, holder: _Holder) -> None:
        woken = []
        with self._lock:
            self._holders.remove(holder)
            if holder.parent is not None:
                holder.parent.children -= 1
            while self._queue and len(self._holders) < self.limit:
                waiter = self._queue.popleft()
                waiter.parent.waiting -= 1
                waiter.granted = self._grant(waiter.parent)
                woken.append(waiter)
        for waiter in woken:
            waiter.wake()

    @property
    def live(self) -> int:
        with self._lock:
            return len(self._holders)
