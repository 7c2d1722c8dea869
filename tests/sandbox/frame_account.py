"""The run's frame account against what the host really allocates: one frame read by the host's
channel under tracemalloc, beside the most the account counted for it (attack rounds 18 and 19)."""

from __future__ import annotations

import contextlib
import gc
import os
import threading
import time
from collections.abc import Iterator

from rlm.sandbox.host_memory import HostFrameBudget
from rlm.sandbox.local import protocol
from rlm.sandbox.local.channel import WorkerChannel
from tests.sandbox.conftest import traced_peak


class PeakBudget(HostFrameBudget):
    """The run's account, remembering the most it ever counted."""

    peak = 0

    def exchange(self, held: int, size: int) -> bool:
        taken = super().exchange(held, size)
        self.peak = max(self.peak, self.held_bytes)
        return taken


def call_frame(value: bytes) -> bytes:
    """The JSON of an llm_query call frame whose one argument is `value` (JSON text)."""
    return b'{"type": "call", "fn": "llm_query", "args": [' + value + b'], "kwargs": {}}'


@contextlib.contextmanager
def channel_sending(payload: bytes, budget: HostFrameBudget | None = None) -> Iterator[WorkerChannel]:
    """The host's channel, whose worker end (a thread) writes `payload` as one frame without a
    concatenated copy for tracemalloc to see; the pipes are closed after."""
    from_worker, worker_end = os.pipe()
    unused_read, to_worker = os.pipe()
    channel = WorkerChannel(to_worker, from_worker, max_frame_bytes=1 << 40, budget=budget)

    def worker() -> None:
        with os.fdopen(worker_end, "wb") as out:
            out.write(protocol.header(len(payload)))
            out.write(payload)

    writer = threading.Thread(target=worker)
    writer.start()
    try:
        yield channel
    finally:
        writer.join()
        for fd in (from_worker, unused_read, to_worker):
            os.close(fd)


def peak_while_received(payload: bytes) -> tuple[int, int, dict]:
    """(tracemalloc's peak while the host's channel reads `payload` as one frame, the account's peak, the message)."""
    budget = PeakBudget(1 << 40)
    with channel_sending(payload, budget) as channel:
        gc.collect()
        peak, message = traced_peak(lambda: channel.receive(time.monotonic() + 60))
    assert isinstance(message, dict)
    return peak, budget.peak, message
