"""The local restricted sandbox as a DSPy `CodeInterpreter`, so `dspy.RLM` can run on it.

    dspy.RLM("context, query -> answer", interpreter_factory=RestrictedInterpreter)

Unlike DSPy's own interpreters, variables are sent to the worker only when they change: a large
`context` crosses the process boundary once, not on every step.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

from dspy.primitives.code_interpreter import CodeExecutionError, CodeInterpreterError, FinalOutput

from rlm.errors import SandboxError
from rlm.sandbox.base import SandboxLimits
from rlm.sandbox.local import LocalSandbox


class RestrictedInterpreter:
    """A DSPy `CodeInterpreter` backed by `LocalSandbox` (RestrictedPython in a limited worker)."""

    def __init__(
        self,
        tools: dict[str, Callable[..., Any]] | None = None,
        output_fields: list[dict[str, Any]] | None = None,
        limits: SandboxLimits | None = None,
    ) -> None:
        self._tools: dict[str, Callable[..., Any]] = dict(tools or {})
        self.output_fields = output_fields
        self._sandbox = LocalSandbox(limits)
        self._started = False
        self._offered: tuple[tuple[str, ...], tuple[str, ...] | None] | None = None
        self._sent: dict[str, Any] = {}

    @property
    def tools(self) -> dict[str, Callable[..., Any]]:
        return self._tools

    def start(self) -> None:
        if not self._started:
            try:
                self._sandbox.start()
            except SandboxError as exc:
                raise CodeInterpreterError(str(exc)) from exc
            self._started = True

    def execute(self, code: str, variables: dict[str, Any] | None = None) -> Any:
        self.start()
        hidden = [name for name in variables or {} if name.startswith("_") or not name.isidentifier()]
        if hidden:
            # Restricted code cannot name these; recoverable, so DSPy can carry on without them.
            raise CodeExecutionError(f"the restricted sandbox cannot bind the names {hidden} (leading underscore)")
        try:
            self._offer_tools()
            changed = {k: v for k, v in (variables or {}).items() if self._sent.get(k, _UNSET) is not v}
            if changed:
                self._sandbox.set_variables(changed)
                self._sent.update(changed)
            result = self._sandbox.execute(code, self._call_tool)
        except SandboxError as exc:
            raise CodeInterpreterError(str(exc)) from exc
        if result.restarted:
            # A new worker holds only `context`: SUBMIT, the tools and the variables are offered
            # again before the next step (forgotten, every later SUBMIT was a NameError).
            self._offered = None
            self._sent.clear()
        if result.submitted is not None:
            return FinalOutput(result.submitted)
        if result.final_answer is not None:
            return FinalOutput(result.final_answer)
        if result.error:
            if result.error.startswith("SyntaxError"):
                raise SyntaxError(result.error)
            raise CodeExecutionError(result.error)
        return result.output or None

    def shutdown(self) -> None:
        self._sandbox.close()
        self._started = False
        self._offered = None
        self._sent.clear()

    def _offer_tools(self) -> None:
        fields = tuple(f["name"] for f in self.output_fields) if self.output_fields else None
        # Names with a leading underscore (DSPy's sub-agent shim) cannot be reached from restricted
        # code, so they are not offered; DSPy then runs without sub-agents and says so.
        names = tuple(sorted(n for n in self._tools if n.isidentifier() and not n.startswith("_")))
        offer = (names, fields)
        if offer != self._offered:
            self._sandbox.define_tools(list(offer[0]), list(fields) if fields is not None else None)
            self._offered = offer

    def _call_tool(self, name: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        # Only what was offered: a worker past the policy can write a call frame for any name, and
        # tools left unoffered (DSPy's sub-agent shim) must stay out of its reach.
        offered = self._offered[0] if self._offered is not None else ()
        tool = self._tools.get(name) if name in offered else None
        if tool is None:
            raise NameError(f"no tool named {name!r}")
        value = tool(*args, **kwargs)
        if inspect.isawaitable(value):
            value = asyncio.run(_await(value))
        return value


_UNSET = object()


async def _await(awaitable: Any) -> Any:
    return await awaitable
