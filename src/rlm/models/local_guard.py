"""The local model server's guard: runs llama.cpp's server as its child, starts it again if it dies
while used (the kernel's OOM killer), and stops it when no process uses it any more. Started by
`rlm.models.local_server` as a plain script (`python -I local_guard.py SPEC`), so it imports only
the standard library; `local_server` imports `live_users` from here.

Each process using the server holds an flock on its own file under the users folder. The kernel
drops that lock when the process dies, however it dies (SIGKILL included), so the guard sees it
without signals or timing guesses. The server dies with the guard (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PR_SET_PDEATHSIG = 1
CHECK_EVERY_S = 0.5
STOP_GRACE_S = 3.0  # llama.cpp's server ignores SIGTERM while it answers: SIGKILL after this
# A server that dies after serving this long (the kernel's OOM killer, a crash) is started again
# while processes use it, at most MAX_RESTARTS times; one that dies sooner, or before it served,
# failed to start, and starting it again would only hide why.
RESTART_AFTER_UPTIME_S = 30.0
MAX_RESTARTS = 3
# llama-cpp-python's server runs on uvicorn, which prints this once it listens. A server that never
# prints it is never restarted: the safe side.
SERVING_LINE = b"Uvicorn running on"


def live_users(users_dir: Path, remove_stale: bool = True) -> int:
    """How many processes hold their user file's lock; with `remove_stale`, files whose holder died go.

    Remove only holding the state lock: a process registers (create, then lock) under that lock.
    """
    count = 0
    for path in users_dir.glob("*"):
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            count += 1
        else:
            if remove_stale:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        finally:
            os.close(fd)
    return count


class CappedLog:
    """Appends to `path`; past `cap` bytes the file becomes `path.1` (replacing it) and a new one starts."""

    def __init__(self, path: Path, cap: int) -> None:
        self.path, self.cap = path, cap
        self.file = open(path, "ab")  # noqa: SIM115 - held for the guard's lifetime

    def write(self, data: bytes) -> None:
        while data:
            room = self.cap - self.file.tell()
            if room <= 0:
                self.file.close()
                os.replace(self.path, self.path.with_name(self.path.name + ".1"))
                self.file = open(self.path, "ab")  # noqa: SIM115
                room = self.cap
            self.file.write(data[:room])
            data = data[room:]
        self.file.flush()


def _server_child_setup() -> None:
    # Runs in the server child between fork and exec: its own process group, and death with the guard.
    os.setpgid(0, 0)
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _stop(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def _launch(command: list[str]) -> tuple[subprocess.Popen[bytes], int | None]:
    """The server process and its output's descriptor."""
    server = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=_server_child_setup,  # the guard has one thread: safe here
    )
    assert server.stdout is not None
    return server, server.stdout.fileno()


def _drain(output: int | None, log: CappedLog) -> None:
    """What a server that ended still had to say."""
    if output is not None:
        with contextlib.suppress(OSError):
            while data := os.read(output, 1 << 16):
                log.write(data)


def _forget_record(record: Path) -> None:
    with contextlib.suppress(FileNotFoundError, ValueError):
        if json.loads(record.read_text()).get("guard_pid") == os.getpid():
            record.unlink()


def main(spec: dict[str, Any]) -> int:
    users, record = Path(spec["users"]), Path(spec["record"])
    log = CappedLog(Path(spec["log"]), int(spec["log_cap"]))
    stop_requested: list[int] = []
    for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(number, lambda signum, _frame: stop_requested.append(signum))
    log.write(f"== guard {os.getpid()} starting: {' '.join(spec['command'])}\n".encode())
    server, output = _launch(spec["command"])
    serving_since: float | None = None
    restart_after = float(spec.get("restart_after_uptime_s", RESTART_AFTER_UPTIME_S))
    restarts = 0
    lock_fd = os.open(spec["lock"], os.O_RDWR | os.O_CREAT, 0o600)
    next_check = time.monotonic() + CHECK_EVERY_S
    reason = ""
    while not reason:
        if output is not None:
            ready, _, _ = select.select([output], [], [], 0.2)
            if ready:
                data = os.read(output, 1 << 16)
                if data:
                    log.write(data)
                    if serving_since is None and SERVING_LINE in data:  # split across reads: not seen, not restarted
                        serving_since = time.monotonic()
                else:
                    output = None
        else:
            time.sleep(0.2)
        if server.poll() is not None:
            reason = f"the server exited with code {server.returncode}"
            served_s = 0.0 if serving_since is None else time.monotonic() - serving_since
            if (
                not stop_requested
                and serving_since is not None
                and served_s >= restart_after
                and restarts < MAX_RESTARTS
                and live_users(users, remove_stale=False) > 0
            ):
                restarts += 1
                log.write(
                    f"== guard {os.getpid()}: {reason} after {served_s:.0f} s (-9 is SIGKILL, often the kernel's "
                    f"OOM killer: see dmesg); starting it again ({restarts} of {MAX_RESTARTS})\n".encode()
                )
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(server.pid, signal.SIGKILL)  # what it started must not hold its output open
                _drain(output, log)
                server, output = _launch(spec["command"])
                serving_since, reason = None, ""
        elif stop_requested:
            reason = f"signal {stop_requested[0]}"
        elif time.monotonic() >= next_check:
            next_check = time.monotonic() + CHECK_EVERY_S
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a process is starting or attaching: look again next round
            try:
                if live_users(users) == 0:
                    reason = "no process uses it"
                    # Stopped under the lock: whoever takes it next finds the port free.
                    _stop(server)
                    _forget_record(record)
            finally:
                fcntl.flock(lock_fd, fcntl.LOCK_UN)
    _stop(server)
    _forget_record(record)
    _drain(output, log)
    log.write(f"== guard {os.getpid()} stopped the server: {reason}\n".encode())
    return 0


if __name__ == "__main__":
    sys.exit(main(json.loads(sys.argv[1])))
