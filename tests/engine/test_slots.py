"""The live-sandbox cap: nodes queue for slots, and a tree of waiting nodes never deadlocks."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rlm.engine.slots import SandboxSlots, Slot


def grow(slots: SandboxSlots, slot: Slot, depth: int, fan: int, live: list[int], lock: threading.Lock) -> int:
    """A node that holds `slot` and runs `fan` children at once; returns how many ran as nodes."""
    with lock:
        live[0] += 1
        live[1] = max(live[1], live[0])
    nodes = 1
    try:
        if depth > 0:
            with ThreadPoolExecutor(max_workers=fan) as pool:

                def child() -> int:
                    got = slots.acquire(slot, time.monotonic() + 20, lambda: None)
                    if got is None:  # answered as a plain call
                        time.sleep(0.001)
                        return 0
                    return grow(slots, got, depth - 1, fan, live, lock)

                nodes += sum(pool.map(lambda _: child(), range(fan)))
        time.sleep(0.001)
    finally:
        with lock:
            live[0] -= 1
        slot.release()
    return nodes


@given(limit=st.integers(1, 5), depth=st.integers(1, 3), fan=st.integers(1, 4))
def test_a_tree_of_nodes_waiting_for_slots_completes_within_the_cap(limit, depth, fan):
    slots, live, lock = SandboxSlots(limit), [0, 0], threading.Lock()
    done = []
    runner = threading.Thread(target=lambda: done.append(grow(slots, slots.root(), depth, fan, live, lock)))
    runner.start()
    runner.join(timeout=20)
    assert done, "the tree deadlocked"
    assert live[1] <= limit
    assert slots.live == 0


def test_a_waiter_whose_step_time_runs_out_leaves_the_queue():
    from rlm.engine.limits import LimitError

    slots = SandboxSlots(2)
    root = slots.root()
    busy = slots.acquire(root, None, lambda: None)  # a working child holds the second slot
    assert busy is not None
    with pytest.raises(LimitError, match="time ran out"):
        slots.acquire(root, time.monotonic() + 0.05, lambda: None)
    busy.release()
    assert slots.acquire(root, None, lambda: None) is not None
