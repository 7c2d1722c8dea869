"""Batched sub-calls run on threads kept between batches: order, width, nesting, reuse, cancelling."""

from __future__ import annotations

import threading
import time

import pytest

from rlm.engine.batch_threads import KeptThreads, cancel_pending, run_batch

WAIT_S = 10.0


def test_results_come_back_in_order_and_an_item_error_stays_with_its_item():
    def item(i: int) -> int:
        if i == 3:
            raise ValueError("item 3 failed")
        return i * i

    futures = run_batch([lambda i=i: item(i) for i in range(8)], width=3, threads=KeptThreads())
    assert [f.result(WAIT_S) for f in futures if f.exception(WAIT_S) is None] == [0, 1, 4, 16, 25, 36, 49]
    assert isinstance(futures[3].exception(), ValueError)


def test_no_more_than_width_items_run_at_once():
    lock = threading.Lock()
    running = peak = 0

    def item() -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.02)
        with lock:
            running -= 1

    futures = run_batch([item] * 12, width=4, threads=KeptThreads())
    for future in futures:
        future.result(WAIT_S)
    assert 1 <= peak <= 4


def test_nested_batches_finish_whatever_the_width():
    threads = KeptThreads()

    def parent(i: int) -> list[int]:
        inner = run_batch([lambda j=j: i * 10 + j for j in range(3)], width=1, threads=threads)
        return [f.result(WAIT_S) for f in inner]

    futures = run_batch([lambda i=i: parent(i) for i in range(4)], width=4, threads=threads)
    assert [f.result(WAIT_S) for f in futures] == [[0, 1, 2], [10, 11, 12], [20, 21, 22], [30, 31, 32]]


def test_a_later_batch_runs_on_the_threads_an_earlier_one_left():
    threads = KeptThreads()
    gate = threading.Barrier(4, timeout=WAIT_S)  # all four run at once: four threads

    def first() -> int:
        gate.wait()
        return threading.get_ident()

    before = {f.result(WAIT_S) for f in run_batch([first] * 4, width=4, threads=threads)}
    time.sleep(0.05)  # let them go back to waiting
    after = {f.result(WAIT_S) for f in run_batch([threading.get_ident] * 4, width=4, threads=threads)}
    assert len(before) == 4 and after <= before


def test_idle_threads_leave():
    threads = KeptThreads(idle_s=0.05)
    idents = {f.result(WAIT_S) for f in run_batch([threading.get_ident] * 3, width=3, threads=threads)}
    deadline = time.monotonic() + WAIT_S
    while idents & {t.ident for t in threading.enumerate()} and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not idents & {t.ident for t in threading.enumerate()}
    # and the pool still works afterwards
    assert [f.result(WAIT_S) for f in run_batch([lambda: "again"], width=1, threads=threads)] == ["again"]


def test_cancelled_items_that_had_not_started_never_run():
    started = threading.Event()
    release = threading.Event()
    ran: list[int] = []

    def item(i: int) -> int:
        ran.append(i)
        if i == 0:
            started.set()
            release.wait(WAIT_S)
        return i

    futures = run_batch([lambda i=i: item(i) for i in range(5)], width=1, threads=KeptThreads())
    assert started.wait(WAIT_S)
    cancel_pending(futures)
    release.set()
    assert futures[0].result(WAIT_S) == 0
    assert all(f.cancelled() for f in futures[1:])
    time.sleep(0.05)
    assert ran == [0]


@pytest.mark.parametrize("width", [1, 16])
def test_an_empty_batch_starts_nothing(width):
    assert run_batch([], width=width, threads=KeptThreads()) == []
