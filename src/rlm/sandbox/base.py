"""The Sandbox protocol: where a node's `context` lives and the model's code runs.

The engine talks only to this interface; `registry.py` picks an implementation by name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from rlm.sandbox.host_memory import HostFrameBudget

# The REPL functions whose work happens on the host: the sandbox forwards each call to this
# handler as (function name, positional arguments, keyword arguments) and returns its result to
# the model's code.
SubcallHandler = Callable[[str, list[Any], dict[str, Any]], Any]

HOST_FUNCTIONS = ("llm_query", "llm_query_batched", "recursive_llm", "recursive_llm_batched")


@dataclass(frozen=True)
class ExecutionResult:
    """What one execution of model code produced."""

    output: str  # printed text plus the value of a trailing expression, already cut to the limit
    error: str | None = None  # the model-facing error text, or None
    final_answer: str | None = None  # set when the code called FINAL / FINAL_VAR successfully
    restarted: bool = False  # the worker was killed (timeout, crash) and restarted with `context`
    submitted: dict[str, Any] | None = None  # DSPy's SUBMIT(...) fields, for the interpreter adapter

    @property
    def has_final(self) -> bool:
        return self.final_answer is not None


@dataclass(frozen=True)
class SandboxLimits:
    exec_timeout: float = 30.0
    memory_limit_mb: int = 1024
    max_output_chars: int = 4000
    # Shared by every sandbox of one run: the host memory their messages may hold at once
    # (sandbox/host_memory.py). None: only each worker's own frame cap applies.
    frame_budget: HostFrameBudget | None = field(default=None, compare=False)


@runtime_checkable
class Sandbox(Protocol):
    """A persistent REPL for one RLM node."""

    def start(self) -> None: ...

    def load(self, context: Any) -> None:
        """Make `context` available to later executions; called once per node."""

    def execute(self, code: str, handler: SubcallHandler) -> ExecutionResult: ...

    def close(self) -> None: ...


def clip_middle(text: str, limit: int) -> str:
    """Keep the head and tail of `text` within `limit` characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    head = limit * 2 // 3
    tail = limit - head
    cut = len(text) - head - tail
    return f"{text[:head]}\n... [{cut} characters cut] ...\n{text[-tail:]}"
