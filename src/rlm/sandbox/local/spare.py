"""One warm spare worker, so a sandbox's start does not wait for a process to boot.

A worker takes ~60 ms to start here (the interpreter, RestrictedPython, the jail, the namespaces),
and every node starts one: against a fast model that is most of a short run. When a sandbox takes
a worker, the next one is started in the background, so the next node (a child, the next run)
finds it ready.

A spare is a fresh worker and nothing else: started by the very command line a sandbox would run
(the pool is keyed by it: same jail, policy, limits and namespaces), from the same spawner thread
(so it dies with the host, even by SIGKILL), it has only entered its jail and said "ready"; the
sandbox that takes it reads that greeting and checks the jail as for any start. It is handed out
once and never comes back: a used worker is killed, never pooled. At most one spare exists (about
18 MB resident); `RLM_SANDBOX_SPARE=0` in the environment turns it off.
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Callable

Spawn = Callable[[], "subprocess.Popen[bytes]"]


def spare_enabled() -> bool:
    return os.environ.get("RLM_SANDBOX_SPARE", "1").strip().lower() not in ("0", "false", "no", "off")


class SparePool:
    """Holds at most one started, unused worker, for the command line it was started with."""

    def __init__(self, kill: Callable[[subprocess.Popen[bytes]], None], wait_s: float) -> None:
        self._kill = kill
        self._wait_s = wait_s
        self._lock = threading.Condition()
        self._key: tuple[str, ...] | None = None
        self._spare: subprocess.Popen[bytes] | None = None
        self._starting = False
        self._claimed = False  # a taker is waiting for the spare being started
        self._owner_pid = os.getpid()
        self._closed = False

    def take(self, key: tuple[str, ...]) -> subprocess.Popen[bytes] | None:
        """The spare started with `key`, now owned by the caller, or None: then start a worker.

        A spare still booting is waited for by one taker (it is ready sooner than a new start);
        takers that come at the same time start their own, in parallel.
        """
        if not spare_enabled():
            return None
        with self._lock:
            self._forget_if_forked()
            if self._key != key:
                return None
            if self._spare is None and self._starting and not self._claimed:
                self._claimed = True
                try:
                    self._lock.wait_for(lambda: not self._starting, timeout=self._wait_s)
                finally:
                    self._claimed = False
            if self._key != key or self._spare is None:
                return None
            spare, self._spare = self._spare, None
        if spare.poll() is not None:  # died while waiting (killed from outside): not usable
            self._kill(spare)
            return None
        return spare

    def refill(self, key: tuple[str, ...], spawn: Spawn) -> None:
        """Start a spare for `key` in the background, unless one is ready or on its way.

        A spare for another command line is replaced: one idle worker at most.
        """
        if not spare_enabled():
            return
        with self._lock:
            self._forget_if_forked()
            if self._closed or self._starting or (self._spare is not None and self._key == key):
                return
            stale, self._spare, self._key = self._spare, None, key
            self._starting = True
        if stale is not None:
            self._kill(stale)
        threading.Thread(target=self._start, args=(key, spawn), name="rlm-spare-worker", daemon=True).start()

    def close(self) -> None:
        """Kill the spare; no more are started (at the host's exit)."""
        with self._lock:
            self._closed = True
            spare, self._spare = self._spare, None
            owned = self._owner_pid == os.getpid()
        if spare is not None and owned:
            self._kill(spare)

    def _start(self, key: tuple[str, ...], spawn: Spawn) -> None:
        process = None
        try:
            process = spawn()
        except Exception:  # a spare is an optimisation: the next start spawns and reports the error
            process = None
        finally:
            with self._lock:
                self._starting = False
                keep = process is not None and not self._closed and self._key == key and self._spare is None
                if keep:
                    self._spare = process
                self._lock.notify_all()
        if process is not None and not keep:
            self._kill(process)

    def _forget_if_forked(self) -> None:
        # A forked host inherits the parent's spare object, not its child process: never use it.
        if self._owner_pid != os.getpid():
            self._owner_pid = os.getpid()
            self._spare, self._key, self._starting, self._claimed = None, None, False, False
