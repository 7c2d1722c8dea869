"""E2B's service as the adapter meets it: the SDK, its errors, and the limits of a user's plan.

`sandbox.py` creates sandboxes through `create_sandbox` (throttled and retried process-wide) and
registers them in `LIVE`, which extends their lifetime while this process runs and kills them
when it exits.
"""

from __future__ import annotations

import atexit
import logging
import os
import random
import threading
import time
from types import ModuleType
from typing import Any

from rlm.errors import SandboxError
from rlm.install_check import install_hint

logger = logging.getLogger(__name__)

# E2B allows 1 sandbox creation per second on its Hobby plan and 5 on Pro; the default suits both.
CREATIONS_PER_SECOND_ENV = "RLM_E2B_CREATIONS_PER_SECOND"
DEFAULT_CREATIONS_PER_SECOND = 1.0
CREATE_ATTEMPTS = 6
BACKOFF_BASE_S = 1.0
BACKOFF_CAP_S = 30.0
# Killing at exit must not hold the interpreter for the SDK's 60 s default request timeout.
EXIT_KILL_TIMEOUT_S = 10.0


def load_sdk() -> Any:
    try:
        from e2b_code_interpreter import Sandbox
    except ImportError:
        raise SandboxError(f"The e2b sandbox needs the E2B SDK (e2b-code-interpreter): {install_hint('e2b')}") from None
    return Sandbox


def sdk_errors() -> ModuleType:
    """The SDK's exception classes, matched with isinstance so their subclasses count too."""
    from e2b import exceptions

    return exceptions


def creations_per_second() -> float:
    raw = os.environ.get(CREATIONS_PER_SECOND_ENV, "").strip()
    if not raw:
        return DEFAULT_CREATIONS_PER_SECOND
    try:
        rate = float(raw)
    except ValueError:
        rate = 0.0
    if not rate > 0:
        raise SandboxError(f"{CREATIONS_PER_SECOND_ENV}={raw!r}: set it to a positive number, e.g. 5 on E2B's Pro plan")
    return rate


class _CreationGate:
    """Spaces sandbox creations across the whole process: batched recursion creates them in bursts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next = 0.0

    def wait_turn(self, per_second: float) -> None:
        with self._lock:
            now = time.monotonic()
            turn = max(now, self._next)
            self._next = turn + 1.0 / per_second
        time.sleep(max(0.0, turn - now))


_GATE = _CreationGate()


def backoff_s(attempt: int) -> float:
    """Exponential backoff with jitter, so throttled hosts do not retry in step."""
    return min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt) * random.uniform(0.5, 1.0)


def create_sandbox(sdk: Any, **options: Any) -> Any:
    """`sdk.create(**options)` within the plan's creation rate, retrying refusals for capacity."""
    errors = sdk_errors()
    for attempt in range(CREATE_ATTEMPTS):
        _GATE.wait_turn(creations_per_second())
        try:
            return sdk.create(**options)
        except errors.AuthenticationException as exc:
            raise SandboxError(f"E2B refused the API key ({exc}): check E2B_API_KEY or pass api_key=...") from exc
        except (errors.RateLimitException, errors.ServiceBusyException) as exc:
            if attempt == CREATE_ATTEMPTS - 1:
                raise SandboxError(
                    f"E2B refused to create a sandbox {CREATE_ATTEMPTS} times ({type(exc).__name__}: {exc}). "
                    "Your plan limits creations per second and sandboxes alive at once: lower max_live_sandboxes, "
                    f"set {CREATIONS_PER_SECOND_ENV} to your plan's rate, or close other E2B sandboxes."
                ) from exc
            delay = backoff_s(attempt)
            logger.info("E2B refused a sandbox (%s); retrying in %.1f s", exc, delay)
            time.sleep(delay)
        except Exception as exc:
            raise SandboxError(f"could not start an E2B sandbox: {type(exc).__name__}: {exc}") from exc
    raise AssertionError("unreachable")


def kill_quietly(box: Any, lifetime: float, **options: Any) -> None:
    """Kill a sandbox; a failure is logged, not raised: unextended, the sandbox stops within `lifetime`."""
    try:
        box.kill(**options)
    except Exception as exc:
        logger.warning(
            "recursive-llm: could not kill E2B sandbox %s (%s: %s); it stops by itself within %.0f s",
            getattr(box, "sandbox_id", "?"),
            type(exc).__name__,
            exc,
            lifetime,
        )


class _Entry:
    def __init__(self, box: Any, lifetime: float) -> None:
        self.box, self.lifetime = box, lifetime
        self.extended = time.monotonic()


class LiveSandboxes:
    """The sandboxes this process owns: kept alive while it runs, killed when it exits.

    Sandboxes are created with a short lifetime, so those of a crashed host stop soon; a keeper
    thread extends the live ones, including a parent's while a slow child RLM works for it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[int, _Entry] = {}
        self._wake = threading.Event()
        self._keeper: threading.Thread | None = None
        self._atexit = False

    def add(self, box: Any, lifetime: float) -> None:
        with self._lock:
            self._entries[id(box)] = _Entry(box, lifetime)
            if not self._atexit:
                self._atexit = True
                atexit.register(self.kill_all)
            if self._keeper is None:
                self._keeper = threading.Thread(target=self._keep, name="rlm-e2b-keeper", daemon=True)
                self._keeper.start()
        self._wake.set()

    def remove(self, box: Any) -> None:
        with self._lock:
            self._entries.pop(id(box), None)

    def owns(self, box: Any) -> bool:
        with self._lock:
            return id(box) in self._entries

    def extend(self, box: Any) -> None:
        """Give `box` its full lifetime again (SDK `set_timeout`); raises what the SDK raises."""
        with self._lock:
            entry = self._entries.get(id(box))
        if entry is not None:
            box.set_timeout(max(1, round(entry.lifetime)))
            entry.extended = time.monotonic()

    def kill_all(self) -> None:
        with self._lock:
            entries, self._entries = list(self._entries.values()), {}
        for entry in entries:
            kill_quietly(entry.box, entry.lifetime, request_timeout=EXIT_KILL_TIMEOUT_S)

    def _keep(self) -> None:
        while True:
            with self._lock:
                entries = list(self._entries.values())
            now = time.monotonic()
            for entry in entries:
                if now - entry.extended >= entry.lifetime / 3 and self.owns(entry.box):
                    try:
                        self.extend(entry.box)
                    except Exception as exc:  # the next step finds a lost sandbox and restarts it
                        logger.debug("could not extend E2B sandbox: %s: %s", type(exc).__name__, exc)
            wait = min((entry.lifetime / 3 for entry in entries), default=60.0)
            self._wake.wait(max(0.05, wait / 2))
            self._wake.clear()


LIVE = LiveSandboxes()

_memory_warned = False


def warn_memory_limit_once(memory_limit_mb: int, default_mb: int) -> None:
    global _memory_warned
    if memory_limit_mb != default_mb and not _memory_warned:
        _memory_warned = True
        logger.warning(
            "recursive-llm: memory_limit_mb=%s does not apply to sandbox='e2b': an E2B sandbox's memory is "
            "set by its template (E2B's template settings), not by this library.",
            memory_limit_mb,
        )
