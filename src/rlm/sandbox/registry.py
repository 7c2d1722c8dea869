"""Sandbox selection by name: the built-in ones, any registered by users, and "auto".

`RLM(sandbox=...)` wins; otherwise the `RLM_SANDBOX` environment variable; otherwise "auto", which
picks E2B when `E2B_API_KEY` is set and the E2B SDK is installed, else the local restricted sandbox.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from rlm.errors import SandboxError
from rlm.sandbox.base import Sandbox, SandboxLimits

logger = logging.getLogger(__name__)

SandboxFactory = Callable[[SandboxLimits], Sandbox]
# Raises SandboxError, naming what is missing, when a sandbox cannot be used here.
AvailabilityCheck = Callable[[], None]

_FACTORIES: dict[str, SandboxFactory] = {}
_CHECKS: dict[str, AvailabilityCheck] = {}
_ALIASES = {"local": "restricted"}
_warned: set[str] = set()


def register_sandbox(name: str, factory: SandboxFactory, check: AvailabilityCheck | None = None) -> None:
    """Make `RLM(sandbox=name)` build its sandboxes with `factory(limits)`."""
    _FACTORIES[name] = factory
    if check is not None:
        _CHECKS[name] = check


def available_sandboxes() -> list[str]:
    return ["auto", *sorted(_FACTORIES)]


def resolve_sandbox_name(requested: str | None) -> str:
    """The concrete sandbox name for a request; SandboxError if it is unknown or unusable."""
    name = (requested or os.environ.get("RLM_SANDBOX") or "auto").strip().lower()
    name = _ALIASES.get(name, name)
    if name == "auto":
        return _auto()
    if name not in _FACTORIES:
        choices = ", ".join(repr(n) for n in available_sandboxes())
        raise SandboxError(f"Unknown sandbox {requested or name!r}: choose one of {choices}")
    if name in _CHECKS:
        _CHECKS[name]()
    return name


def _auto() -> str:
    if not os.environ.get("E2B_API_KEY"):
        return "restricted"
    try:
        _CHECKS.get("e2b", lambda: None)()
    except SandboxError as exc:
        if str(exc) not in _warned:  # once per reason, not once per node
            _warned.add(str(exc))
            logger.warning("recursive-llm: E2B_API_KEY is set but %s; using the local restricted sandbox", exc)
        return "restricted"
    return "e2b"


def create_sandbox(name: str, limits: SandboxLimits) -> Sandbox:
    return _FACTORIES[resolve_sandbox_name(name)](limits)


def _local(limits: SandboxLimits) -> Sandbox:
    from rlm.sandbox.local import LocalSandbox

    return LocalSandbox(limits)


def _e2b(limits: SandboxLimits) -> Sandbox:
    from rlm.sandbox.e2b_sandbox import E2BSandbox

    return E2BSandbox(limits)


def _e2b_check() -> None:
    from rlm.sandbox.e2b_sandbox import check_available

    check_available()


register_sandbox("restricted", _local)
register_sandbox("e2b", _e2b, _e2b_check)
