"""Sandbox selection by name: the built-in ones, any registered by users, and "auto".

`RLM(sandbox=...)` wins; otherwise the `RLM_SANDBOX` environment variable; otherwise "auto".
"""

from __future__ import annotations

import os
from collections.abc import Callable

from rlm.errors import SandboxError
from rlm.sandbox.base import Sandbox, SandboxLimits

SandboxFactory = Callable[[SandboxLimits], Sandbox]

_FACTORIES: dict[str, SandboxFactory] = {}
_ALIASES = {"local": "restricted"}


def register_sandbox(name: str, factory: SandboxFactory) -> None:
    """Make `RLM(sandbox=name)` build its sandboxes with `factory(limits)`."""
    _FACTORIES[name] = factory


def available_sandboxes() -> list[str]:
    return ["auto", *sorted(_FACTORIES)]


def resolve_sandbox_name(requested: str | None) -> str:
    """The concrete sandbox name for a request ("auto", an alias, a registered name or None)."""
    name = (requested or os.environ.get("RLM_SANDBOX") or "auto").strip().lower()
    name = _ALIASES.get(name, name)
    if name == "auto":
        # E2B joins the choice when its adapter is registered and configured (see the sandbox issue).
        return "e2b" if "e2b" in _FACTORIES and os.environ.get("E2B_API_KEY") else "restricted"
    if name not in _FACTORIES:
        choices = ", ".join(repr(n) for n in available_sandboxes())
        raise SandboxError(f"Unknown sandbox {requested or name!r}: choose one of {choices}")
    return name


def create_sandbox(name: str, limits: SandboxLimits) -> Sandbox:
    return _FACTORIES[resolve_sandbox_name(name)](limits)


def _local(limits: SandboxLimits) -> Sandbox:
    from rlm.sandbox.local import LocalSandbox

    return LocalSandbox(limits)


register_sandbox("restricted", _local)
