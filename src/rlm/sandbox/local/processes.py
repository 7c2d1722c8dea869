"""Starting and ending sandbox worker processes: the spawner thread, the kill, the reaping.

Every worker starts from one long-lived thread (its death signal follows that thread) and ends by
SIGKILL to its process group; the kernel's tear-down of a jailed process in its own namespaces
takes 5-15 ms here, so the wait for it (the reaping) happens on a thread of its own, off the path
of the node that closed its sandbox.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
from typing import Any

from rlm.errors import SandboxError

logger = logging.getLogger(__name__)

_isolation_lock = threading.Lock()
_isolation_checked: bool | None = None


# New network, IPC and UTS namespaces, as root of a new user namespace (mapped to the host's user).
UNSHARE_FLAGS = ("-n", "-i", "-u", "-r")
# The probe does what the worker will (jail.rename_host): a seccomp profile around us (a container's)
# may refuse sethostname even in a namespace of our own, and the worker would then refuse to start.
_RENAMES_ITS_HOST = (sys.executable, "-I", "-S", "-c", "import socket; socket.sethostname('sandbox')")


def network_isolation_available() -> bool:
    """Whether `unshare -n -i -u -r` can give the worker empty network and IPC namespaces and a
    host name of its own (checked once).

    An extra layer: the jail's seccomp filter already refuses every socket.
    """
    global _isolation_checked
    with _isolation_lock:
        if _isolation_checked is None:
            unshare = shutil.which("unshare")
            ok = False
            if unshare and sys.platform.startswith("linux"):
                try:
                    command = [unshare, *UNSHARE_FLAGS, *_RENAMES_ITS_HOST]
                    ok = subprocess.run(command, capture_output=True, timeout=5).returncode == 0
                except (OSError, subprocess.SubprocessError):
                    ok = False
            if not ok:
                logger.info(
                    "recursive-llm: no network namespace (unshare -n -i -u -r failed); "
                    "the jail's filter alone keeps sockets closed"
                )
            _isolation_checked = ok
        return _isolation_checked


class _Spawner:
    """Starts every worker from one thread that lives as long as the host process.

    The worker's death signal (PR_SET_PDEATHSIG) fires when the *thread* that started it ends,
    not the process: a worker started from a short-lived thread (a batch's pool) would die with
    that thread. Started from here, it dies exactly when the host does, even by SIGKILL.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: queue.Queue[tuple[list[str], dict[str, Any], queue.Queue[Any]]] = queue.Queue()
        self._owner_pid = -1

    def popen(self, command: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        with self._lock:
            if self._owner_pid != os.getpid():  # first use, or a forked host that lost the thread
                self._requests = queue.Queue()
                threading.Thread(target=self._serve, args=(self._requests,), name="rlm-spawner", daemon=True).start()
                self._owner_pid = os.getpid()
            requests = self._requests
        done: queue.Queue[Any] = queue.Queue(maxsize=1)
        requests.put((command, kwargs, done))
        result = done.get()
        if isinstance(result, BaseException):
            raise result
        return result  # type: ignore[no-any-return,unused-ignore]

    @staticmethod
    def _serve(requests: queue.Queue[tuple[list[str], dict[str, Any], queue.Queue[Any]]]) -> None:
        while True:
            command, kwargs, done = requests.get()
            try:
                done.put(subprocess.Popen(command, **kwargs))
            except BaseException as exc:  # handed to the caller, raised there
                done.put(exc)


_spawner = _Spawner()


def spawn(command: list[str]) -> subprocess.Popen[bytes]:
    try:
        return _spawner.popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={},
            cwd="/",
            bufsize=0,
            close_fds=True,
            start_new_session=True,
        )
    except OSError as exc:
        raise SandboxError(f"could not start the sandbox worker: {exc}") from exc


def kill_now(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the worker's process group, unless it was already reaped.

    Once reaped, its pid (and group id) may belong to an unrelated process: hostile code only has
    to make its worker exit for a later `killpg` on the old number to hit someone else.
    """
    if process.returncode is not None:
        return
    for kill in (lambda: os.killpg(process.pid, signal.SIGKILL), process.kill):
        with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
            kill()


def kill_group(process: subprocess.Popen[bytes]) -> None:
    kill_now(process)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)
    for stream in (process.stdin, process.stdout):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


class _Reaper:
    """Waits for killed workers on one thread, so that ending one never waits for the kernel."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[subprocess.Popen[bytes]] = queue.SimpleQueue()
        self._owner_pid = -1

    def retire(self, process: subprocess.Popen[bytes]) -> None:
        kill_now(process)  # dead now; only the reaping waits
        with self._lock:
            if self._owner_pid != os.getpid():  # first use, or a forked host that lost the thread
                self._queue = queue.SimpleQueue()
                threading.Thread(target=self._serve, args=(self._queue,), name="rlm-reaper", daemon=True).start()
                self._owner_pid = os.getpid()
            self._queue.put(process)

    @staticmethod
    def _serve(processes: queue.SimpleQueue[subprocess.Popen[bytes]]) -> None:
        while True:
            kill_group(processes.get())


_reaper = _Reaper()


def retire(process: subprocess.Popen[bytes]) -> None:
    """Kill `process` and its group at once; wait for it and close its pipes in the background."""
    _reaper.retire(process)
