"""The REPL functions whose work happens on the host: llm_query, recursive_llm and batched forms.

The sandbox forwards each call here. Sub-calls use the recursive model; `recursive_llm` starts a
child node one level deeper, or, at `max_depth` or with no sandbox free, a plain sub-LM call with
the slice in its prompt. Every call passes the tree's limits first (`limits.py`): a refused call
raises into the model's code at once, without calling the LM.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from rlm.engine.batch_threads import cancel_pending, run_batch
from rlm.engine.calls import aask_plain, ask_plain
from rlm.engine.limits import LimitError, LimitLog, deadline_passed, prompt_cap
from rlm.errors import BudgetExceededError, ContextError, RLMError
from rlm.models.errors import FATAL_ERRORS

if TYPE_CHECKING:
    from rlm.engine.node import NodeRun
    from rlm.engine.slots import Slot


class HostFunctions:
    """Answers one node's sub-calls, synchronously (`call`) or on an event loop (`acall`)."""

    def __init__(self, node: NodeRun) -> None:
        self.node = node
        self.fatal: BaseException | None = None
        self.log = LimitLog(node.node_id, node.depth, node.tree.bus)
        self.deadline: float | None = None  # the current step's: past it, sub-calls are refused

    def begin_step(self, deadline: float) -> None:
        self.deadline = deadline

    def raise_fatal(self) -> None:
        """Re-raise an error that must stop the run (bad key, unknown model) after the step ends."""
        if self.fatal is not None:
            raise self.fatal

    # --- synchronous ---------------------------------------------------------------------------------
    def call(self, fn: str, args: list[Any], kwargs: dict[str, Any] | None = None) -> Any:
        try:
            if fn == "llm_query":
                return self._one(partial(self._llm_query, args[0]))
            if fn == "llm_query_batched":
                return self._batch([partial(self._one, partial(self._llm_query, p)) for p in self._items(fn, args)])
            if fn == "recursive_llm":
                return self._one(partial(self._recursive, args[0], args[1]))
            if fn == "recursive_llm_batched":
                pairs = _pairs(self._items(fn, args))
                return self._batch([partial(self._one, partial(self._recursive, q, c)) for q, c in pairs])
        except BaseException as exc:
            self._note_fatal(exc)
            raise
        raise ValueError(f"unknown host function {fn!r}")

    def _one(self, work: Callable[[], str]) -> str:
        try:
            self._admit()
            return work()
        except (BudgetExceededError, LimitError) as exc:  # both name the setting that refused
            self.log.hit(exc.limit, str(exc))
            raise

    def _llm_query(self, prompt: Any) -> str:
        return ask_plain(self.node.site, self.node.tree.sub_lm, self._prompt(prompt, "an llm_query"), "llm_query")

    def _recursive(self, query: Any, sub_context: Any) -> str:
        if self._needs_node(query, sub_context):
            slot = self.node.tree.slots.acquire(self._slot(), self.deadline, self._queued)
            if slot is not None:
                return self._child(query, sub_context, slot).run().answer
        return ask_plain(self.node.site, self.node.tree.sub_lm, self._leaf_prompt(query, sub_context), "recursive_leaf")

    def _batch(self, jobs: list[Callable[[], str]]) -> list[str]:
        if not jobs:
            return []
        futures = run_batch(jobs, self.node.tree.config.max_concurrency)
        try:
            return [self._settle(f.exception(), f) for f in futures]
        except BaseException:
            cancel_pending(futures)  # Ctrl-C or a fatal error: the items not yet started must not all run first
            raise

    def _settle(self, error: BaseException | None, future: Any) -> str:
        if error is None:
            return str(future.result())
        self._note_fatal(error)
        return f"Error: {type(error).__name__}: {error}"

    # --- asynchronous --------------------------------------------------------------------------------
    async def acall(self, fn: str, args: list[Any], kwargs: dict[str, Any] | None = None) -> Any:
        try:
            if fn == "llm_query":
                return await self._aone(partial(self._allm_query, args[0]))
            if fn == "llm_query_batched":
                return await self._abatch(
                    [partial(self._aone, partial(self._allm_query, p)) for p in self._items(fn, args)]
                )
            if fn == "recursive_llm":
                return await self._aone(partial(self._arecursive, args[0], args[1]))
            if fn == "recursive_llm_batched":
                pairs = _pairs(self._items(fn, args))
                return await self._abatch([partial(self._aone, partial(self._arecursive, q, c)) for q, c in pairs])
        except BaseException as exc:
            self._note_fatal(exc)
            raise
        raise ValueError(f"unknown host function {fn!r}")

    async def _aone(self, work: Callable[[], Awaitable[str]]) -> str:
        try:
            self._admit()
            return await work()
        except (BudgetExceededError, LimitError) as exc:  # both name the setting that refused
            self.log.hit(exc.limit, str(exc))
            raise

    async def _allm_query(self, prompt: Any) -> str:
        prompt = self._prompt(prompt, "an llm_query")
        return await aask_plain(self.node.site, self.node.tree.sub_lm, prompt, "llm_query")

    async def _arecursive(self, query: Any, sub_context: Any) -> str:
        if self._needs_node(query, sub_context):
            slot = await self.node.tree.slots.aacquire(self._slot(), self.deadline, self._queued)
            if slot is not None:
                return (await self._child(query, sub_context, slot).arun()).answer
        prompt = self._leaf_prompt(query, sub_context)
        return await aask_plain(self.node.site, self.node.tree.sub_lm, prompt, "recursive_leaf")

    async def _abatch(self, jobs: list[Callable[[], Awaitable[str]]]) -> list[str]:
        limit = asyncio.Semaphore(self.node.tree.config.max_concurrency)

        async def bounded(job: Callable[[], Awaitable[str]]) -> str:
            async with limit:
                return await job()

        results = await asyncio.gather(*(bounded(j) for j in jobs), return_exceptions=True)
        out = []
        for item in results:
            if isinstance(item, BaseException):
                self._note_fatal(item)
                out.append(f"Error: {type(item).__name__}: {item}")
            else:
                out.append(str(item))
        return out

    # --- limits --------------------------------------------------------------------------------------
    def _admit(self) -> None:
        """Refuse a sub-call past the step's time or the tree's LM-call budget, before any work."""
        if deadline_passed(self.deadline):
            seconds = self.node.tree.config.max_step_seconds
            message = (
                f"this step's time is up (max_step_seconds={seconds:g}, sub-calls included; a child node "
                "also ends with its parent's step): sub-calls are refused until the next step"
            )
            raise LimitError("max_step_seconds", message)
        self.node.tree.budget.check()

    def _items(self, fn: str, args: list[Any]) -> list[Any]:
        items = args[0] if args else None
        if not isinstance(items, (list, tuple)):
            raise RLMError(f"{fn} takes a list, got {type(items).__name__}")
        cap = self.node.tree.config.max_batch_items
        if len(items) > cap:
            message = f"{fn} takes at most {cap} items per call (max_batch_items), got {len(items)}: split the list"
            self.log.hit("max_batch_items", message)
            raise LimitError("max_batch_items", message)
        return list(items)

    def _prompt(self, prompt: Any, what: str) -> str:
        """The prompt as sent, or a refusal before sending when it cannot fit.

        Refused, not cut: a prompt cut in the middle loses what the model meant to ask about without
        anyone knowing, and one past the sub-model's window fails at the provider anyway.
        """
        if not isinstance(prompt, str):
            raise RLMError(f"prompts must be text, got {type(prompt).__name__}")
        cap, why = prompt_cap(self.node.tree.config.sub_prompt_chars, self.node.tree.sub_lm)
        if len(prompt) <= cap:
            return prompt
        message = (
            f"{what} prompt of {len(prompt)} characters is over {why} ({cap} characters) and was not sent: "
            "split the slice into smaller pieces (e.g. llm_query_batched over chunks) and combine the answers"
        )
        raise LimitError("sub_prompt_chars", message)

    def _queued(self) -> None:
        self.log.hit(
            "max_live_sandboxes",
            f"all {self.node.tree.config.max_live_sandboxes} sandboxes are in use: a recursive_llm call waits for one",
        )

    # --- children ------------------------------------------------------------------------------------
    def _needs_node(self, query: Any, sub_context: Any) -> bool:
        """Whether recursive_llm starts a child node; False when max_depth makes it a plain call."""
        if not isinstance(query, str) or not query.strip():
            raise ContextError("recursive_llm(query, sub_context) needs a non-empty query string")
        if sub_context is None or (isinstance(sub_context, (str, list, dict)) and not sub_context):
            raise ContextError("recursive_llm got an empty sub_context; pass the slice to work on")
        return self.node.depth + 1 < self.node.tree.config.max_depth

    def _slot(self) -> Slot:
        slot = self.node.slot
        if slot is None:
            raise RLMError("a node made a sub-call before its sandbox started")
        return slot

    def _child(self, query: str, sub_context: Any, slot: Slot) -> NodeRun:
        from rlm.engine.node import NodeRun  # node creates HostFunctions: import late

        try:
            if deadline_passed(self.deadline):  # the slot came too late for this step
                self._admit()
            tree = self.node.tree
            query = self._prompt(query, "a recursive_llm query")
            return NodeRun(
                tree, query, sub_context, self.node.depth + 1, self.node.node_id, tree.sub_lm, slot, self.deadline
            )
        except BaseException:
            slot.release()  # refused before the child existed: its slot goes back at once
            raise

    def _leaf_prompt(self, query: str, sub_context: Any) -> str:
        text = sub_context if isinstance(sub_context, str) else json.dumps(sub_context, ensure_ascii=False)
        return self._prompt(f"{query}\n\nContext:\n{text}", "a recursive_llm (answered as a plain call)")

    def _note_fatal(self, exc: BaseException) -> None:
        if self.fatal is None and (isinstance(exc, FATAL_ERRORS) or not isinstance(exc, Exception)):
            self.fatal = exc


def _pairs(pairs: list[Any]) -> list[tuple[Any, Any]]:
    out = []
    for item in pairs:
        if not isinstance(item, (list, tuple)) or len(item) != 2:
            raise RLMError("recursive_llm_batched takes a list of (query, sub_context) pairs")
        out.append((item[0], item[1]))
    return out
