"""Threads for batched sub-calls, kept between batches so a batch does not wait for threads to start.

A pool per batch started up to `max_concurrency` threads for every `llm_query_batched`: each
`Thread.start()` waits until the new thread runs, and with the earlier items' requests holding the
GIL that cost 1-3 ms per thread on a busy 2-core machine, before the batch's later requests left.
Here idle threads wait for the next batch, and leave after `IDLE_S` without work.

The pool has no size limit on purpose: an item may wait on a nested batch (a child node's, inside
its parent's), and a fixed number of threads could all be waiting on work queued behind them. What
bounds the load on the provider is the tree's request cap (`concurrency.RequestSlots`); what bounds
a batch's threads is its width (`run_batch`).
"""

from __future__ import annotations

import itertools
import os
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")
IDLE_S = 60.0


class KeptThreads:
    """Runs functions on daemon threads that are reused while work keeps coming."""

    def __init__(self, idle_s: float = IDLE_S) -> None:
        self.idle_s = idle_s
        self._lock = threading.Lock()
        self._work: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)  # threads waiting for work that no submitter counted on
        self._owner_pid = os.getpid()

    def submit(self, work: Callable[[], None]) -> None:
        with self._lock:
            if self._owner_pid != os.getpid():  # a forked process has none of the parent's threads
                self._work, self._idle, self._owner_pid = queue.SimpleQueue(), threading.Semaphore(0), os.getpid()
            work_queue, idle = self._work, self._idle
        work_queue.put(work)
        if not idle.acquire(blocking=False):  # no thread free for it: one more
            threading.Thread(target=self._serve, args=(work_queue, idle), name="rlm-subcall", daemon=True).start()

    def _serve(self, work_queue: queue.SimpleQueue[Callable[[], None]], idle: threading.Semaphore) -> None:
        while True:
            try:
                work = work_queue.get(timeout=self.idle_s)
            except queue.Empty:
                if idle.acquire(blocking=False):  # still uncounted: nobody waits on this thread
                    return
                continue  # a submitter counted on this thread: its work is on the way
            work()  # `run_batch`'s runners catch everything their items raise
            idle.release()


_threads = KeptThreads()


def run_batch(jobs: list[Callable[[], T]], width: int, threads: KeptThreads = _threads) -> list[Future[T]]:
    """Start `jobs` at most `width` at a time, in order; their futures, in the same order.

    A future not started yet can be cancelled (`Future.cancel`), and is then skipped: Ctrl-C or a
    fatal error must not let the rest of a batch run first.
    """
    futures: list[Future[T]] = [Future() for _ in jobs]
    pending: Iterator[tuple[Callable[[], T], Future[T]]] = iter(zip(jobs, futures, strict=True))
    lock = threading.Lock()

    def runner() -> None:
        while True:
            with lock:
                item = next(pending, None)
            if item is None:
                return
            job, future = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(job())
            except BaseException as exc:  # handed to the batch's caller with the item's result
                future.set_exception(exc)

    for _ in itertools.repeat(None, min(width, len(jobs))):
        threads.submit(runner)
    return futures


def cancel_pending(futures: list[Future[Any]]) -> None:
    for future in futures:
        future.cancel()  # a no-op for items already running or done
