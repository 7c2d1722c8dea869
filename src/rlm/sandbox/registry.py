"""Sandbox selection by name: the built-in ones, any registered by users, and "auto".

A named `RLM(sandbox=...)` wins; "auto" (the default) and None defer to the `RLM_SANDBOX` environment
variable when it is set, so the variable sets the default for the Python API and the CLI alike. "auto" itself
picks E2B when `E2B_API_KEY` is set and the E2B SDK is installed, else the local jailed sandbox
("restricted"), else -- with a warning that says so -- the policy-only one. Isolation is never
weakened silently: "restricted" refuses to start where its OS jail cannot be built.
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
    name = (requested or "auto").strip().lower()
    source = f"Unknown sandbox {requested!r}"
    from_env = os.environ.get("RLM_SANDBOX", "").strip()
    if name == "auto" and from_env:  # the default defers to the variable; an explicit name wins over it
        name, source = from_env.lower(), f"Unknown sandbox {from_env!r} in RLM_SANDBOX"
    name = _ALIASES.get(name, name)
    if name == "auto":
        return _auto()
    if name not in _FACTORIES:
        choices = ", ".join(repr(n) for n in available_sandboxes())
        raise SandboxError(f"{source}: choose one of {choices}")
    if name in _CHECKS:
        _CHECKS[name]()
    return name


def may_use_e2b_key(sandbox: str) -> bool:
    """Whether a run whose sandbox is `sandbox` may use this environment's E2B_API_KEY. A key that only
    ./.env gave is used when the user names e2b, never by 'auto': a .env may come with the folder being
    read, and its key would run the code and the documents in its author's E2B account (attack round 22)."""
    from rlm.dotenv_keys import came_from_dotenv

    if not os.environ.get("E2B_API_KEY"):
        return False
    return sandbox == "e2b" or (sandbox == "auto" and not came_from_dotenv("E2B_API_KEY"))


def _auto() -> str:
    if may_use_e2b_key("auto"):
        try:
            _CHECKS.get("e2b", lambda: None)()
            return "e2b"
        except SandboxError as exc:
            _warn_once(f"recursive-llm: E2B_API_KEY is set but {exc}; using the local restricted sandbox")
    elif os.environ.get("E2B_API_KEY"):
        _warn_once(
            "recursive-llm: E2B_API_KEY comes from ./.env, so sandbox='auto' does not pick E2B (that key's account "
            "would receive the code and documents); pass sandbox='e2b' (--sandbox e2b) to use it"
        )
    try:
        _CHECKS["restricted"]()
        return "restricted"
    except SandboxError:
        _warn_once(
            f"recursive-llm: sandbox='auto' chose 'restricted-policy-only': the OS jail is not available "
            f"here ({_local_jail_problem()}), so model code is held by the Python policy alone. Pass "
            "sandbox='restricted' to refuse to run without the jail, or use sandbox='e2b'."
        )
        return "restricted-policy-only"


def _warn_once(message: str) -> None:
    if message not in _warned:  # once per reason, not once per node
        _warned.add(message)
        logger.warning(message)


def create_sandbox(name: str, limits: SandboxLimits) -> Sandbox:
    return _FACTORIES[resolve_sandbox_name(name)](limits)


def _local(limits: SandboxLimits) -> Sandbox:
    from rlm.sandbox.local import LocalSandbox

    return LocalSandbox(limits)


def _local_policy_only(limits: SandboxLimits) -> Sandbox:
    from rlm.sandbox.local import LocalSandbox

    box = LocalSandbox(limits, jail=False)
    box.name = "restricted-policy-only"
    return box


def _local_jail_problem() -> str | None:
    from rlm.sandbox.local.jail import probe

    global _jail_problem
    if _jail_problem is _UNKNOWN:
        _jail_problem = probe().problem
    return _jail_problem  # type: ignore[return-value]


def _local_check() -> None:
    problem = _local_jail_problem()
    if problem is not None:
        from rlm.sandbox.local.sandbox import jail_refused

        raise jail_refused(problem)


_UNKNOWN = object()
_jail_problem: object = _UNKNOWN


def _e2b(limits: SandboxLimits) -> Sandbox:
    from rlm.sandbox.e2b import E2BSandbox

    return E2BSandbox(limits)


def _e2b_check() -> None:
    from rlm.sandbox.e2b import check_available

    check_available()


register_sandbox("restricted", _local, _local_check)
register_sandbox("restricted-policy-only", _local_policy_only)
register_sandbox("e2b", _e2b, _e2b_check)
