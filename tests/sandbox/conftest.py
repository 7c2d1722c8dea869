"""Shared by the sandbox tests: a host handler that expects no calls, a jailed worker with the
Python policy switched off (the test-only `python_policy=False`) to attack the OS jail alone, and
one with the policy on, with the check that a policy route is refused; the attack rounds' probes,
and readers of what the host and its workers hold (/proc, tracemalloc, the page cache)."""

from __future__ import annotations

import ctypes
import math
import os
import resource
import signal
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from rlm import RLM
from rlm.errors import RLMError
from rlm.sandbox import registry
from rlm.sandbox.base import SandboxLimits
from rlm.sandbox.e2b import E2BSandbox
from rlm.sandbox.local import LocalSandbox, jail
from rlm.testing import FakeOpenAIServer
from tests.sandbox.fake_e2b import FakeSandbox, fresh_service

T = TypeVar("T")

needs_jail = pytest.mark.skipif(not jail.probe().available, reason=f"no OS jail here: {jail.probe().problem}")


def no_calls(fn, args, kwargs):
    raise AssertionError(f"unexpected host call {fn}")


def code(src: str) -> str:
    """A model's reply whose one code block is `src`."""
    return f"```python\n{src}\n```"


def run_with_first_step(first_step: str, **settings) -> tuple[str, list[str]]:
    """The answer of a run against FakeOpenAIServer whose root's first code is `first_step` (then
    FINAL('done')), and the prompts the model was sent (each one's last 3,000 characters); fails the
    test if run() raises."""
    prompts: list[str] = []
    replies = [code(first_step), code("FINAL('done')")]

    def reply(body: dict) -> str:
        prompts.append(str(body.get("messages", ""))[-3000:])
        return replies.pop(0) if replies else code("FINAL('done')")

    server = FakeOpenAIServer(reply).start()
    rlm = RLM(model="openai/test-model", api_base=server.base_url, api_key="test", exec_timeout=5.0, **settings)
    try:
        try:
            return rlm.run("q", "ctx").answer, prompts
        except RLMError as exc:
            pytest.fail(f"run() raised {type(exc).__name__}: {str(exc)[:300]}")
    finally:
        server.stop()


def forged_frames(*bodies: bytes, then_exit: bool = False) -> str:
    """Worker code (policy off) that writes `bodies` as frames on its channel (fd 4), then exits or prints 'sent'."""
    writes = "".join(f"os.write(4, struct.pack('>I', {len(b)}) + {b!r})\n" for b in bodies)
    tail = "os._exit(0)\n" if then_exit else "print('sent')\n"
    return "import os, struct\n" + writes + tail


# --- what a process holds, read from /proc by the host ------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """The user and system CPU seconds process `pid` has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def status_mb(pid: int | str, field: str) -> int:
    """A size field of /proc/<pid>/status ("VmRSS", "VmPTE", ...) in MB; `pid` "self" for this process."""
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":")) // 1024


def worker_pid(box: LocalSandbox) -> int:
    """The pid of `box`'s current worker, read from the host's side."""
    assert box._process is not None
    return box._process.pid


def idle_cpu_seconds(box: LocalSandbox, left_behind: str, idle_s: float) -> float:
    """CPU seconds the worker spends in `idle_s` of no step after running `left_behind` (which must
    succeed): what handlers and timers that code left behind cost while the host is not waiting."""
    assert box.execute(textwrap.dedent(left_behind), no_calls).error is None
    pid = worker_pid(box)
    before = cpu_seconds(pid)
    time.sleep(idle_s)  # no step runs: the LM is thinking, or the chat's user is away
    return cpu_seconds(pid) - before


@pytest.fixture(scope="module")
def unrestricted():
    box = LocalSandbox(SandboxLimits(exec_timeout=5.0, memory_limit_mb=256), python_policy=False)
    box.start()
    box.load("context")
    yield box
    box.close()


@pytest.fixture(scope="module")
def restricted():
    box = LocalSandbox(SandboxLimits(exec_timeout=3.0, memory_limit_mb=256, max_output_chars=2000))
    box.start()
    box.load("the context")
    yield box
    box.close()


def assert_refused_and_box_intact(box: LocalSandbox, code: str) -> str:
    """`code` fails, gives no answer, and the worker still holds its context (`restricted`'s); the error."""
    result = box.execute(code, no_calls)
    assert result.error is not None, f"not refused; output was {result.output!r}"
    assert result.final_answer is None
    assert box.execute("len(context)", no_calls).output == "11\n"
    return result.error


@pytest.fixture
def policy_off(monkeypatch):
    """`sandbox="restricted"` builds workers with the Python policy off, as a hole in it would allow."""
    monkeypatch.setitem(registry._FACTORIES, "restricted", lambda limits: LocalSandbox(limits, python_policy=False))


@pytest.fixture
def readable_file():
    """A file the jailed worker may read: inside its own folder (which Landlock leaves readable),
    owned by the host's user, as the library's files are in a user's own virtualenv."""
    import rlm.sandbox.local as local

    path = Path(local.__file__).parent / f"probe-{os.getpid()}.txt"
    path.write_text("host file\n")
    yield path
    path.unlink()


# The attack files' plain-Python probes (run with the policy off, as a hole in it would allow).
x86_64_only = pytest.mark.skipif(os.uname().machine != "x86_64", reason="raw syscall numbers are x86_64's")

# `sc(number, *args)` runs a raw syscall and raises OSError when it fails, as Python's wrappers do;
# `host` is the host's pid, `buf` a scratch buffer.
RAW = """
import ctypes, os, errno, fcntl, struct
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def arg(x):
    return ctypes.c_long(x) if isinstance(x, int) else x
def sc(number, *args):
    ctypes.set_errno(0)
    got = libc.syscall(ctypes.c_long(number), *[arg(a) for a in args])
    if got < 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return got
host = os.getppid()
buf = ctypes.create_string_buffer(256)
"""

# The probes' ctypes set-up for mmap, which returns an address (libc's default restype, int, cuts it).
LIBC_MMAP = """
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
"""

# Worker code (policy off) run once `body` holds a call frame's bytes: it writes the frame on its
# channel (fd 4) without a concatenated copy and drops it, then reads the host's reply (fd 3) into `reply`.
SEND_BODY_READ_REPLY = """\
os.write(4, struct.pack('>I', len(body)))
view = memoryview(body)
while view:
    view = view[os.write(4, view):]
del body, view
(size,) = struct.unpack('>I', os.read(3, 4))
reply = b''
while len(reply) < size:
    reply += os.read(3, size - len(reply))
"""

PROBE_REPORT = """
    print('OK:', repr(result)[:200])
except BaseException as exc:
    print('DENIED:', type(exc).__name__, exc)"""


def attempt(box: LocalSandbox, action: str) -> str:
    """Run `action` (which sets `result`) after RAW; 'OK: ...' or 'DENIED: <exception> ...'."""
    code = "try:\n" + textwrap.indent(RAW + textwrap.dedent(action), "    ") + PROBE_REPORT
    result = box.execute(code, no_calls)
    assert result.error is None, result.error
    return result.output


def resident_mb() -> int:
    return status_mb("self", "VmRSS")


def peak_growth_mb(work) -> tuple[int, object]:
    """How far the host's resident memory rose above its start while `work()` ran, and its result."""
    before, peak, done = resident_mb(), [0], threading.Event()

    def watch() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], resident_mb())
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        value = work()
    finally:
        done.set()
        watcher.join()
    return peak[0] - before, value


def traced_peak(work: Callable[[], T]) -> tuple[int, T]:
    """How far the host's own allocations rose above where they stood while `work()` ran (tracemalloc:
    every allocation, exactly, no sampling), and its result."""
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        value = work()
        peak = tracemalloc.get_traced_memory()[1] - start
    finally:
        tracemalloc.stop()
    return peak, value


# --- the machine's page cache, as the host sees it ----------------------------------------------------------
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
PAGE_CACHE_PAGES = 64  # the size of the file written_back() writes, in pages


def cached_pages(path: Path) -> int:
    """How many of `path`'s pages are in the machine's page cache (mincore of a mapping never touched)."""
    size = path.stat().st_size
    fd = os.open(path, os.O_RDONLY)
    try:
        address = _libc.mmap(None, size, 1, 1, fd, 0)  # PROT_READ, MAP_SHARED
    finally:
        os.close(fd)
    assert address not in (None, ctypes.c_void_p(-1).value)
    vector = ctypes.create_string_buffer((size + 4095) // 4096)
    try:
        assert _libc.mincore(address, size, vector) == 0
    finally:
        _libc.munmap(address, size)
    return sum(byte & 1 for byte in vector.raw)


def written_back(path: Path, *, dropped: bool = False) -> Path:
    """`path` filled to PAGE_CACHE_PAGES pages and written back to disk (clean pages, as an installed
    library's are); with `dropped`, then dropped from the page cache."""
    path.write_bytes(b"host file\n" * (PAGE_CACHE_PAGES * 410))
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        if dropped:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return path


def finishes_within(script: str, seconds: float) -> bool:
    """Whether `script` (a fresh interpreter) finishes within `seconds` of CPU time; it is killed
    otherwise. A check of growth, not speed: the input is sized so linear code needs a few seconds
    and quadratic code many minutes. CPU time, not the wall clock: on a loaded machine (the suite
    under coverage beside other work on 2 cores) linear code ran past wall-clock bounds of 12 to
    30 s. A script that waits without using CPU is stopped by the wall clock, at ten times `seconds`."""
    cpu_s = max(1, math.ceil(seconds))

    def limit_cpu() -> None:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))  # SIGXCPU, then SIGKILL

    try:
        done = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            timeout=10 * seconds,
            preexec_fn=limit_cpu,
        )
    except subprocess.TimeoutExpired:
        return False
    if done.returncode in (-signal.SIGXCPU, -signal.SIGKILL):
        return False
    assert done.returncode == 0, done.stderr[-2000:]
    return True


@pytest.fixture
def fake_e2b(tmp_path, monkeypatch):
    service = fresh_service(monkeypatch)
    monkeypatch.setenv("E2B_API_KEY", "e2b-test")

    def make(limits):
        return E2BSandbox(limits, workdir=str(tmp_path / "rlm"), sdk=FakeSandbox, api_key="e2b-test")

    monkeypatch.setitem(registry._FACTORIES, "e2b", make)
    yield service
    FakeSandbox.shutdown()
