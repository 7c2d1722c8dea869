"""The paper's "RLM without sub-calls" ablation: the same engine and REPL, no sub-model to call.

Used by the paper suite (`suite.py`). The engine has no switch for this, so the ablation wraps what
it can reach from outside: the step's instructions lose every line about the sub-call functions,
and each node's sandbox answers a call to one of them with an error saying they are off.
"""

from __future__ import annotations

import re
from typing import Any

from rlm import RLM
from rlm.sandbox.base import HOST_FUNCTIONS, ExecutionResult, Sandbox, SandboxLimits, SubcallHandler
from rlm.sandbox.registry import create_sandbox

OFF_MESSAGE = "sub-calls are switched off in this run (RLM without sub-calls): answer with code alone"
_SUBCALL_WORDS = (*HOST_FUNCTIONS, "sub-model", "sub-call", "subcall")


def _refuse(fn: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
    raise RuntimeError(f"{fn}: {OFF_MESSAGE}")


class WithoutSubcalls:
    """A sandbox whose sub-call functions fail at once; everything else is the wrapped sandbox's."""

    def __init__(self, inner: Sandbox) -> None:
        self.inner = inner

    def start(self) -> None:
        self.inner.start()

    def load(self, context: Any) -> None:
        self.inner.load(context)

    def execute(self, code: str, handler: SubcallHandler) -> ExecutionResult:
        return self.inner.execute(code, _refuse)

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, name: str) -> Any:  # e.g. a sandbox's name, for reports
        return getattr(self.inner, name)


def instructions_without_subcalls(instructions: str) -> str:
    """The instructions with every line that mentions a sub-call function dropped, and one line saying so."""
    kept = [line for line in instructions.splitlines() if not any(w in line.lower() for w in _SUBCALL_WORDS)]
    renumbered, number = [], 0
    for line in kept:  # a numbered list that lost an item is numbered again: 1, 2, 3
        match = re.match(r"(\d+)\. ", line)
        number = number + 1 if match else 0
        renumbered.append(f"{number}. {line[match.end() :]}" if match else line)
    return "\n".join(renumbered).rstrip() + "\n\nSub-model calls are not available in this run: use code alone.\n"


def without_subcalls(rlm: RLM) -> RLM:
    """Turn `rlm` into its no-sub-call ablation, in place, and return it."""
    module = rlm.module
    sandbox_name = module.config.sandbox

    def factory(limits: SandboxLimits) -> Sandbox:
        return WithoutSubcalls(create_sandbox(sandbox_name, limits))

    module.sandbox_factory = factory
    step = module.step
    step.signature = step.signature.with_instructions(instructions_without_subcalls(step.signature.instructions))
    return rlm
