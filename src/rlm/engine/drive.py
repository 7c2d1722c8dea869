"""Drivers of a node's loop: `drive` (blocking LM calls) and `adrive` (asyncio), with the events
that open and close a node. `NodeRun.plan` holds the logic; these only perform its effects: ask the
model, run code in the node's sandbox (started while the first request is out), and clean up.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import CancelledError as FutureCancelled
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from rlm.engine.calls import aask_step, ask_step, model_name
from rlm.engine.describe import context_length
from rlm.engine.limits import clip_answer, clip_execution
from rlm.engine.node import Ask, NodeOutcome, NodeRun
from rlm.engine.slots import Slot
from rlm.errors import BudgetExceededError, RLMError
from rlm.events import NodeFinished, NodeStarted
from rlm.sandbox.base import ExecutionResult, Sandbox


def begin(node: NodeRun) -> None:
    node.started = time.perf_counter()
    node.tree.bus.emit(
        NodeStarted(
            node.node_id,
            node.parent_id,
            node.depth,
            node.query,
            context_length(node.context),
            model_name(node.lm),
            "rlm",
            time.time(),
        )
    )


def end(node: NodeRun, outcome: NodeOutcome | None, error: BaseException | None) -> None:
    node.tree.bus.emit(
        NodeFinished(
            node_id=node.node_id,
            depth=node.depth,
            answer=outcome.answer if outcome else None,
            finish_reason=outcome.finish_reason if outcome else "error",
            iterations=outcome.iterations if outcome else node.steps_done,
            duration_s=time.perf_counter() - node.started,
            error=None if error is None else f"{type(error).__name__}: {error}",
        )
    )


def step_deadline(node: NodeRun) -> float:
    """Now + max_step_seconds, but never past the parent step's end or the run's time budget."""
    ends = [time.monotonic() + node.tree.config.max_step_seconds, node.ceiling, node.tree.budget.deadline]
    return min(end for end in ends if end is not None)


def checked(node: NodeRun, result: ExecutionResult) -> ExecutionResult:
    node.host.raise_fatal()
    return clip_execution(result, node.tree.config, node.host.log)


def finished(node: NodeRun, outcome: NodeOutcome) -> NodeOutcome:
    return replace(outcome, answer=clip_answer(outcome.answer, node.tree.config, node.host.log))


def drive(node: NodeRun) -> NodeOutcome:
    """Run `node` to its outcome with blocking LM calls."""
    begin(node)
    slot = node.slot = node.slot or node.tree.slots.root()
    stop = node.tree.config.step_stop
    outcome = None
    sandbox: Sandbox | None = None
    opening: Future[None] | None = None
    try:
        sandbox = node.session_sandbox or node.tree.make_sandbox()
        opening = _in_background(_opener(sandbox, node.context))
        plan = node.plan()
        value: Any = None
        throw = False
        while True:
            effect = plan.throw(value) if throw else plan.send(value)
            throw = False
            if isinstance(effect, Ask):
                try:
                    value = ask_step(node.site, node.tree.predictor, node.lm, effect.inputs, effect.purpose, stop)
                except RLMError as exc:  # the plan ends the node with what it has, or skips a compaction
                    if not (isinstance(exc, BudgetExceededError) or effect.purpose == "compact"):
                        raise
                    value, throw = exc, True
            else:
                opening.result()  # a sandbox that failed to start fails the node here
                node.host.begin_step(step_deadline(node))
                value = checked(node, sandbox.execute(effect.code, node.host.call))
    except StopIteration as done:
        assert opening is not None
        try:
            opening.result()  # answered without running code: a broken sandbox still fails the node
        except BaseException as exc:  # raised in this handler, the sibling below would not see it
            end(node, None, exc)
            raise
        outcome = finished(node, done.value)
        return outcome
    except BaseException as exc:
        end(node, None, exc)
        raise
    finally:
        try:
            if opening is not None:
                opening.exception()  # wait: close must not race a start still under way
            if sandbox is not None:
                sandbox.close()
        finally:
            slot.release()
        if outcome is not None:
            end(node, outcome, None)


async def adrive(node: NodeRun) -> NodeOutcome:
    """Run `node` to its outcome on the event loop; sandbox work on the node's own thread."""
    begin(node)
    slot = node.slot = node.slot or node.tree.slots.root()
    stop = node.tree.config.step_stop
    loop = asyncio.get_running_loop()
    # The node's own thread for sandbox work: nodes waiting on their children must not use up
    # a shared pool that the children need to start their sandboxes.
    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"rlm-{node.node_id}")

    subcalls = SubcallsInFlight(loop)

    def bridge(fn: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        # Runs on the sandbox thread; the sub-call itself is awaited on the event loop.
        return subcalls.run(node.host.acall(fn, args, kwargs))

    outcome = None
    sandbox: Sandbox | None = None
    opening: asyncio.Future[None] | None = None
    try:
        sandbox = node.session_sandbox or node.tree.make_sandbox()
        # The node's worker runs in order: steps queue behind the start, close comes last.
        opening = loop.run_in_executor(worker, _opener(sandbox, node.context))
        plan = node.plan()
        value: Any = None
        throw = False
        while True:
            effect = plan.throw(value) if throw else plan.send(value)
            throw = False
            if isinstance(effect, Ask):
                try:
                    value = await aask_step(
                        node.site, node.tree.predictor, node.lm, effect.inputs, effect.purpose, stop
                    )
                except RLMError as exc:  # the plan ends the node with what it has, or skips a compaction
                    if not (isinstance(exc, BudgetExceededError) or effect.purpose == "compact"):
                        raise
                    value, throw = exc, True
            else:
                await opening  # a sandbox that failed to start fails the node here
                node.host.begin_step(step_deadline(node))
                result = await loop.run_in_executor(worker, sandbox.execute, effect.code, bridge)
                value = checked(node, result)
    except StopIteration as done:
        assert opening is not None
        try:
            await opening  # answered without running code: a broken sandbox still fails the node
        except BaseException as exc:  # raised in this handler, the sibling below would not see it
            end(node, None, exc)
            raise
        outcome = finished(node, done.value)
        return outcome
    except BaseException as exc:
        try:
            await subcalls.stop()  # its children report their end before this node does
        finally:
            end(node, None, exc)
        raise
    finally:
        if outcome is None and sandbox is not None and sandbox is not node.session_sandbox:
            # Cancelled or failed: its step, if one runs, has nothing left to give. A session's
            # worker keeps its variables for the next question, so that step ends by its own limit.
            interrupt = getattr(sandbox, "interrupt", None)  # optional: not part of the Sandbox protocol
            if interrupt is not None:
                interrupt()
        await _to_its_end(_close_node(subcalls, opening, sandbox, worker, slot))
        if outcome is not None:
            end(node, outcome, None)


async def _close_node(
    subcalls: SubcallsInFlight,
    opening: asyncio.Future[None] | None,
    sandbox: Sandbox | None,
    worker: ThreadPoolExecutor,
    slot: Slot,
) -> None:
    """Cancelled (or failed) while a step runs on the worker thread: that step's code must not go
    on starting sub-calls, and the ones under way stop (their child nodes close their sandboxes and
    report their end before this node does); close waits for the step to end, and only then is the
    node's slot (and a session's lock, held by its caller) free for the next one."""
    await subcalls.stop()
    try:
        if opening is not None:
            await asyncio.wait({opening})  # close must not race a start still under way
            if not opening.cancelled():
                opening.exception()  # raised above if it mattered; another error is on its way
        if sandbox is not None:
            await asyncio.get_running_loop().run_in_executor(worker, sandbox.close)
    finally:
        worker.shutdown(wait=False)
        slot.release()


async def _to_its_end(work: Coroutine[Any, Any, None]) -> None:
    """Await `work` to its end even if this task is cancelled again meanwhile, then let the cancel
    through. A second cancel (a user's impatient Ctrl-C, a timeout around a timeout) cut a cancelled
    node's clean-up short: the question returned while its step still ran, and the next question
    shared the session's worker with it."""
    task = asyncio.ensure_future(work)
    cancelled = False
    while True:
        try:
            await asyncio.shield(task)
            break
        except asyncio.CancelledError:
            if task.done():  # the clean-up itself was cancelled: the loop is going away
                raise
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError


class SubcallsInFlight:
    """The sub-calls a node's step has on the event loop, stopped together when the node ends."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._futures: set[Future[Any]] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopped = False

    def run(self, call: Coroutine[Any, Any, Any]) -> Any:
        """`call`'s result, on the sandbox thread; an error once the node has stopped its sub-calls."""
        future = asyncio.run_coroutine_threadsafe(self._tracked(call), self._loop)
        with self._lock:
            self._futures.add(future)
            if self._stopped:
                future.cancel()
        try:
            return future.result()
        except FutureCancelled:
            raise RuntimeError("the run was cancelled: its sub-calls are stopped") from None
        finally:
            with self._lock:
                self._futures.discard(future)

    async def _tracked(self, call: Coroutine[Any, Any, Any]) -> Any:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)  # on the loop's thread only, as is `stop`'s read of it
        try:
            return await call
        finally:
            self._tasks.discard(task)

    async def stop(self) -> None:
        """Cancel the sub-calls under way and refuse new ones; return once they have ended."""
        with self._lock:
            self._stopped = True
            for future in self._futures:
                future.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def _opener(sandbox: Sandbox, context: Any) -> Callable[[], None]:
    """Start the sandbox and load the context: run while the node's first request is out.

    A worker process takes ~60 ms to start here (a remote sandbox, seconds), and the first step
    needs only the model; so both wait on each other only when the first reply comes sooner.
    """

    def open_sandbox() -> None:
        sandbox.start()
        sandbox.load(context)

    return open_sandbox


def _in_background(work: Callable[[], None]) -> Future[None]:
    future: Future[None] = Future()

    def run() -> None:
        try:
            work()
        except BaseException as exc:  # handed to the node, raised where it needs the sandbox
            future.set_exception(exc)
        else:
            future.set_result(None)

    threading.Thread(target=run, name="rlm-sandbox-start", daemon=True).start()
    return future
