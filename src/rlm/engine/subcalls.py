"""The REPL functions whose work happens on the host: llm_query, recursive_llm and batched forms.

The sandbox forwards each call here. Sub-calls use the recursive model; `recursive_llm` starts a
child node one level deeper, or, at `max_depth`, a plain sub-LM call with the slice in its prompt.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any

from rlm.engine.calls import aask_plain, ask_plain
from rlm.errors import ContextError, RLMError
from rlm.models.errors import FATAL_ERRORS
from rlm.sandbox.base import clip_middle

if TYPE_CHECKING:
    from rlm.engine.node import NodeRun


class HostFunctions:
    """Answers one node's sub-calls, synchronously (`call`) or on an event loop (`acall`)."""

    def __init__(self, node: NodeRun) -> None:
        self.node = node
        self.fatal: BaseException | None = None

    def raise_fatal(self) -> None:
        """Re-raise an error that must stop the run (bad key, unknown model) after the step ends."""
        if self.fatal is not None:
            raise self.fatal

    # --- synchronous ---------------------------------------------------------------------------------
    def call(self, fn: str, args: list[Any], kwargs: dict[str, Any] | None = None) -> Any:
        try:
            if fn == "llm_query":
                return self._llm_query(args[0])
            if fn == "llm_query_batched":
                return self._batch([partial(self._llm_query, p) for p in _prompts(args[0])])
            if fn == "recursive_llm":
                return self._recursive(args[0], args[1])
            if fn == "recursive_llm_batched":
                return self._batch([partial(self._recursive, q, c) for q, c in _pairs(args[0])])
        except BaseException as exc:
            self._note_fatal(exc)
            raise
        raise ValueError(f"unknown host function {fn!r}")

    def _llm_query(self, prompt: Any) -> str:
        return ask_plain(self.node.site, self.node.tree.sub_lm, _text(prompt), "llm_query")

    def _recursive(self, query: Any, sub_context: Any) -> str:
        child = self._child(query, sub_context)
        if child is None:
            return ask_plain(
                self.node.site, self.node.tree.sub_lm, self._leaf_prompt(query, sub_context), "recursive_leaf"
            )
        return child.run().answer

    def _batch(self, jobs: list[Callable[[], str]]) -> list[str]:
        if not jobs:
            return []
        workers = min(self.node.tree.config.max_concurrency, len(jobs))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rlm-subcall") as pool:
            futures = [pool.submit(job) for job in jobs]
            return [self._settle(f.exception(), f) for f in futures]

    def _settle(self, error: BaseException | None, future: Any) -> str:
        if error is None:
            return str(future.result())
        self._note_fatal(error)
        return f"Error: {type(error).__name__}: {error}"

    # --- asynchronous --------------------------------------------------------------------------------
    async def acall(self, fn: str, args: list[Any], kwargs: dict[str, Any] | None = None) -> Any:
        try:
            if fn == "llm_query":
                return await self._allm_query(args[0])
            if fn == "llm_query_batched":
                return await self._abatch([self._allm_query(p) for p in _prompts(args[0])])
            if fn == "recursive_llm":
                return await self._arecursive(args[0], args[1])
            if fn == "recursive_llm_batched":
                return await self._abatch([self._arecursive(q, c) for q, c in _pairs(args[0])])
        except BaseException as exc:
            self._note_fatal(exc)
            raise
        raise ValueError(f"unknown host function {fn!r}")

    async def _allm_query(self, prompt: Any) -> str:
        return await aask_plain(self.node.site, self.node.tree.sub_lm, _text(prompt), "llm_query")

    async def _arecursive(self, query: Any, sub_context: Any) -> str:
        child = self._child(query, sub_context)
        if child is None:
            return await aask_plain(
                self.node.site, self.node.tree.sub_lm, self._leaf_prompt(query, sub_context), "recursive_leaf"
            )
        return (await child.arun()).answer

    async def _abatch(self, jobs: list[Awaitable[str]]) -> list[str]:
        limit = asyncio.Semaphore(self.node.tree.config.max_concurrency)

        async def bounded(job: Awaitable[str]) -> str:
            async with limit:
                return await job

        results = await asyncio.gather(*(bounded(j) for j in jobs), return_exceptions=True)
        out = []
        for item in results:
            if isinstance(item, BaseException):
                self._note_fatal(item)
                out.append(f"Error: {type(item).__name__}: {item}")
            else:
                out.append(str(item))
        return out

    # --- shared --------------------------------------------------------------------------------------
    def _child(self, query: Any, sub_context: Any) -> NodeRun | None:
        """The child node for recursive_llm, or None when max_depth makes it a plain call."""
        from rlm.engine.node import NodeRun

        if not isinstance(query, str) or not query.strip():
            raise ContextError("recursive_llm(query, sub_context) needs a non-empty query string")
        if sub_context is None or (isinstance(sub_context, (str, list, dict)) and not sub_context):
            raise ContextError("recursive_llm got an empty sub_context; pass the slice to work on")
        tree = self.node.tree
        if self.node.depth + 1 >= tree.config.max_depth:
            return None
        return NodeRun(tree, query, sub_context, self.node.depth + 1, self.node.node_id, tree.sub_lm)

    def _leaf_prompt(self, query: str, sub_context: Any) -> str:
        text = sub_context if isinstance(sub_context, str) else json.dumps(sub_context, ensure_ascii=False)
        text = clip_middle(text, self.node.tree.config.sub_prompt_chars)
        return f"{query}\n\nContext:\n{text}"

    def _note_fatal(self, exc: BaseException) -> None:
        if self.fatal is None and (isinstance(exc, FATAL_ERRORS) or not isinstance(exc, Exception)):
            self.fatal = exc


def _text(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    raise RLMError(f"prompts must be text, got {type(prompt).__name__}")


def _prompts(prompts: Any) -> list[Any]:
    return list(prompts)


def _pairs(pairs: Any) -> list[tuple[Any, Any]]:
    out = []
    for item in pairs:
        if not isinstance(item, (list, tuple)) or len(item) != 2:
            raise RLMError("recursive_llm_batched takes a list of (query, sub_context) pairs")
        out.append((item[0], item[1]))
    return out
