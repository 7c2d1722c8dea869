"""Syscall-level attacks on the OS jail, and a few policy-level ones, that the sandbox holds today.

The jail half runs plain, unrestricted Python in the worker (`python_policy=False`), as a model's
code would after a hole in the Python policy, and reaches for doors that `test_jail.py` does not
try: raw syscall numbers (x32 ABI, clone/vfork, io_uring, bpf), file handles and `openat2`,
descriptors the worker already holds, other processes' memory policy and limits, SIGIO owners.
Each probe prints OK or DENIED; OK would be a hole. The policy half checks routes that only exist
in newer Python syntax or through classes `type()` hands out.
"""

from __future__ import annotations

import os
import signal
import textwrap
import time
from pathlib import Path

import pytest

from rlm.sandbox.local import jail, landlock, seccomp_filter
from rlm.sandbox.local.processes import network_isolation_available
from tests.sandbox.conftest import (
    PROBE_REPORT,
    RAW,
    assert_refused_and_box_intact,
    attempt,
    no_calls,
    worker_pid,
    x86_64_only,
)

pytestmark = pytest.mark.skipif(not jail.probe().available, reason=f"no OS jail here: {jail.probe().problem}")


# x86_64 numbers; the probes are skipped elsewhere.
SYSCALL_ATTEMPTS = {
    "raw-clone": "result = sc(56, 17, 0, 0, 0, 0)",
    "raw-clone3": "result = sc(435, ctypes.create_string_buffer(88), 88)",
    "raw-vfork": "result = sc(58)",
    "raw-fork": "result = sc(57)",
    "io-uring-setup": "result = sc(425, 8, ctypes.create_string_buffer(120))",
    "userfaultfd": "result = sc(323, 0)",
    "bpf": "result = sc(321, 0, ctypes.create_string_buffer(128), 128)",
    "perf-event-open": "result = sc(298, ctypes.create_string_buffer(128), 0, -1, -1, 0)",
    "openat2-etc": (
        "how = ctypes.create_string_buffer(24)\nresult = sc(437, -100, ctypes.c_char_p(b'/etc/passwd'), how, 24)"
    ),
    "name-to-handle-at": (
        "result = sc(303, -100, ctypes.c_char_p(b'/etc'), ctypes.create_string_buffer(256), "
        "ctypes.byref(ctypes.c_int()), 0)"
    ),
    "open-by-handle-at": "result = sc(304, 5, ctypes.create_string_buffer(256), 0)",
    "memfd-execveat": "fd = os.memfd_create('x')\nresult = sc(322, fd, ctypes.c_char_p(b''), 0, 0, 0x1000)",
    "pidfd-getfd": "result = sc(438, 0, 0, 0)",
    "kcmp-host": "result = sc(312, host, host, 0, 0, 0)",
    "setns": "result = sc(308, 0, 0)",
    "personality": "result = sc(135, 0x0040000)",  # READ_IMPLIES_EXEC
    "mknodat": "result = sc(259, -100, ctypes.c_char_p(b'/tmp/rlm-attack-node'), 0o10600, 0)",
    "sethostname": "result = sc(170, ctypes.c_char_p(b'x'), 1)",
    "migrate-pages-of-host": (
        "mask = ctypes.c_ulong(1)\nresult = sc(256, host, 64, ctypes.byref(mask), ctypes.byref(mask))"
    ),
    "move-pages-of-host": (
        "page = ctypes.c_void_p()\nresult = sc(279, host, 1, ctypes.byref(page), 0, ctypes.byref(ctypes.c_int()), 0)"
    ),
    "robust-list-of-host": "result = sc(274, host, ctypes.byref(ctypes.c_void_p()), ctypes.byref(ctypes.c_size_t()))",
    "prlimit-of-host": "limit = (ctypes.c_ulong * 2)(1, 1)\nresult = sc(302, host, 9, ctypes.byref(limit), 0)",
    "capget-of-host": (
        "header = (ctypes.c_uint32 * 2)(0x20080522, host)\n"
        "data = (ctypes.c_uint32 * 6)()\n"
        "result = sc(125, header, data)"
    ),
    # reading another process's limits, priority or scheduling told the host's settings and which pids exist
    "prlimit-read-host": "old = (ctypes.c_ulong * 2)()\nresult = sc(302, host, 7, 0, ctypes.byref(old))",
    "getpriority-of-host": "result = sc(140, 0, host)",
    "getpriority-of-every-process-of-the-user": "result = sc(140, 2, 0)",  # PRIO_USER, this user
    "ioprio-get-of-every-process-of-the-user": "result = sc(252, 3, 0)",  # IOPRIO_WHO_USER
    "ioprio-get-of-host": "result = sc(252, 1, host)",
    "getpgid-of-host": "result = sc(121, host)",
    "getsid-of-host": "result = sc(124, host)",
    "sched-getaffinity-of-host": "mask = ctypes.c_ulong(0)\nresult = sc(204, host, 8, ctypes.byref(mask))",
    "sched-getscheduler-of-host": "result = sc(145, host)",
    "pid-with-high-bits": "old = (ctypes.c_ulong * 2)()\nresult = sc(302, (1 << 32) | host, 7, 0, ctypes.byref(old))",
    # sysinfo is not namespaced: the machine's process count and load
    "sysinfo": "result = sc(99, ctypes.create_string_buffer(128))",
    # statfs: the filesystem id (from the disk's UUID on ext4), free space, inode counts
    "statvfs": "result = os.statvfs(os.path.dirname(os.__file__)).f_fsid",
    "fstatfs": "fd = os.open(os.__file__, os.O_RDONLY)\nresult = sc(138, fd, ctypes.create_string_buffer(120))",
    # the machine's disk cache: a sync loop slows every process's I/O; fadvise/readahead evict or load files
    "sync": "result = sc(162)",
    "syncfs": "fd = os.open(os.__file__, os.O_RDONLY)\nresult = sc(306, fd)",
    "fadvise-dontneed": "fd = os.open(os.__file__, os.O_RDONLY)\nresult = os.posix_fadvise(fd, 0, 0, 4)",
    "readahead": "fd = os.open(os.__file__, os.O_RDONLY)\nresult = sc(187, fd, 0, 1 << 20)",
    "prlimit-raise-own-cap": (
        "limit = (ctypes.c_ulong * 2)(2**63, 2**63)\nresult = sc(302, 0, 9, ctypes.byref(limit), 0)"
    ),
}


@x86_64_only
@pytest.mark.parametrize("action", list(SYSCALL_ATTEMPTS.values()), ids=list(SYSCALL_ATTEMPTS))
def test_raw_syscalls_are_refused(unrestricted, action):
    outcome = attempt(unrestricted, action)
    assert outcome.startswith("DENIED"), outcome
    assert not os.path.exists("/tmp/rlm-attack-node")


FILE_ATTEMPTS = {
    "hard-link-out": "result = os.link('/etc/passwd', '/tmp/rlm-attack-link')",
    "rename-tmp": "result = os.rename('/tmp', '/tmp-rlm-attack')",
    "reopen-held-statm-fd": (
        "result = [open(f'/proc/self/fd/{fd}', 'rb').read(10) for fd in range(3, 16) if _open(fd)]"
    ),
    "relative-to-held-proc-fd": (
        "fds = [fd for fd in range(3, 64) if _is_file(fd)]\n"
        "result = [os.open('../environ', 0, dir_fd=fd) for fd in fds]"
    ),
    "proc-thread-self": "result = os.listdir('/proc/thread-self/')",
    "readlink-host-cwd": "result = os.readlink(f'/proc/{host}/cwd')",
    "readlink-host-exe": "result = os.readlink(f'/proc/{host}/exe')",
    "host-fd-table": "result = os.listdir(f'/proc/{host}/fd')",
    "posix-mqueue": (
        "result = sc(240, ctypes.cast(ctypes.c_char_p(b'rlm-attack'), ctypes.c_void_p).value, 0o102, 0o600, 0)"
    ),
}

_HELPERS = """
import stat
def _open(fd):
    try:
        return stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError:
        return False
_is_file = _open
"""


@x86_64_only
@pytest.mark.parametrize("action", list(FILE_ATTEMPTS.values()), ids=list(FILE_ATTEMPTS))
def test_file_tricks_are_refused(unrestricted, action):
    outcome = attempt(unrestricted, _HELPERS + action)
    assert outcome.startswith("DENIED"), outcome
    assert not os.path.exists("/tmp/rlm-attack-link") and not os.path.exists("/tmp-rlm-attack")


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the x32 ABI is x86_64's")
def test_x32_abi_syscalls_do_not_slip_past_the_filter(unrestricted):
    # socket(AF_INET, SOCK_STREAM) through the x32 numbering: libseccomp kills the process rather
    # than let an unfiltered ABI through; the host restarts the worker and the run goes on.
    result = unrestricted.execute(RAW + "print(sc(0x40000000 + 41, 2, 1, 0))", no_calls)
    assert result.restarted and "SIGSYS" in (result.error or ""), result
    assert attempt(unrestricted, "result = 1").startswith("OK")


@pytest.mark.skipif(
    landlock.landlock_abi() < 6, reason="known hole below Landlock ABI 6: F_SETOWN signals are unscoped"
)
def test_sigio_owner_cannot_signal_the_host(unrestricted):
    """F_SETOWN + F_SETSIG + O_ASYNC on the worker's own pipes, owner = the host (or its group)."""
    received: list[int] = []
    previous = signal.signal(signal.SIGWINCH, lambda signum, frame: received.append(signum))
    code = """
    import fcntl
    pings = []
    for fd in range(3, 8):
        for owner in (host, -host):
            try:
                fcntl.fcntl(fd, fcntl.F_SETOWN, owner)
                fcntl.fcntl(fd, 10, 28)  # F_SETSIG: SIGWINCH
                fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_ASYNC)
            except OSError:
                pass
    for i in range(3):
        pings.append(llm_query('ping'))
    result = pings
    """
    try:
        result = unrestricted.execute(
            "try:\n" + textwrap.indent(RAW + textwrap.dedent(code), "    ") + PROBE_REPORT, lambda *a: "pong"
        )
        time.sleep(0.2)
    finally:
        signal.signal(signal.SIGWINCH, previous)
    assert received == [], result


# --- the policy ---------------------------------------------------------------------------------------
POLICY_ATTEMPTS = {
    "except-star": "try:\n    1 / 0\nexcept* ZeroDivisionError as group:\n    print(group.exceptions)",
    "forged-facade-underscore-read": "import re\nF = type(re)\nprint(getattr(F('x', {}), '__class__'))",
    "real-facade-names-through-getattr": "import json\nprint(getattr(json, '_names'))",
    "method-type-rebinds-host-function": (
        "class K:\n    def m(self):\n        pass\nM = type(K().m)\nprint(getattr(M(len, FINAL), '__self__'))"
    ),
    "function-type-needs-code": "T = type(lambda: 0)\nT(None, {})",
    "offered-function-internals": "getattr(llm_query, '_function')",
    "format-spec-attribute-walk": "format(context, '{0.__class__}')",
    "facade-class-getattr-method": "import re\ngetattr(type(re), '__getattr__')",
    "facade-dir-underscores": "import math\nprint([n for n in dir(math) if n.startswith('_')][0])",
    "import-star-from-facade": "from json import *",
    "strptime-internal-module-name": "import _strptime",
}


@pytest.mark.parametrize("code", list(POLICY_ATTEMPTS.values()), ids=list(POLICY_ATTEMPTS))
def test_policy_routes_are_refused(restricted, code):
    assert_refused_and_box_intact(restricted, code)


def test_a_forged_final_signal_gives_no_answer(restricted):
    code = "try:\n    FINAL('real')\nexcept BaseException as e:\n    Signal = type(e)\nraise Signal()"
    result = restricted.execute(code, no_calls)
    assert result.final_answer == "real"  # the FINAL that ran still counts
    result = restricted.execute("raise Signal()", no_calls)
    assert result.final_answer is None and result.submitted is None
    assert restricted.execute("len(context)", no_calls).output == "11\n"


@x86_64_only
def test_every_new_syscall_number_is_refused_whether_libseccomp_knows_its_name_or_not(unrestricted):
    # setxattrat (463) once wrote security.capability onto a host file: libseccomp 2.5.4 did not
    # know the name, so a denylist of names skipped it. Each number is called with null arguments;
    # only the filter answers EPERM to that (a kernel without the call says ENOSYS, bad arguments EFAULT).
    unified = range(seccomp_filter.UNIFIED_SYSCALLS_FROM, seccomp_filter.UNIFIED_SYSCALLS_TO + 1)
    numbers = [n for n in unified if n not in seccomp_filter.UNIFIED_ALLOWED]
    action = (
        "import errno\n"
        f"let_through = []\nfor n in {numbers!r}:\n"
        "    try:\n        sc(n, 0, 0, 0, 0, 0)\n        let_through.append(n)\n"
        "    except OSError as exc:\n        if exc.errno != errno.EPERM:\n            let_through.append(n)\n"
        "result = let_through"
    )
    assert attempt(unrestricted, action) == "OK: []\n"


@x86_64_only
def test_the_worker_holds_no_capabilities_and_reads_no_extended_attributes(unrestricted, tmp_path):
    target = tmp_path / "tagged.txt"
    target.write_text("x")
    os.setxattr(target, "user.origin", b"https://example.invalid/?token=secret")
    attempt(unrestricted, "result = 1")  # the worker is up and jailed
    status = Path(f"/proc/{worker_pid(unrestricted)}/status").read_text()  # read by the host
    capability_sets = {
        line.split(":")[0]: int(line.split()[1], 16) for line in status.splitlines() if line.startswith("Cap")
    }
    assert capability_sets == {"CapInh": 0, "CapPrm": 0, "CapEff": 0, "CapBnd": 0, "CapAmb": 0}
    # capget takes its pid inside a struct the filter cannot read, so it is refused for every pid
    capget = (
        "header = (ctypes.c_uint32 * 2)(0x20080522, 0)\ndata = (ctypes.c_uint32 * 6)()\nresult = sc(125, header, data)"
    )
    assert attempt(unrestricted, capget).startswith("DENIED")
    assert attempt(unrestricted, f"result = os.getxattr({str(target)!r}, 'user.origin')").startswith("DENIED")
    assert attempt(unrestricted, f"result = os.listxattr({str(target)!r})").startswith("DENIED")


@pytest.mark.skipif(not network_isolation_available(), reason="no user namespaces here")
def test_the_worker_does_not_see_the_machines_name(unrestricted):
    host_name = os.uname().nodename
    outcome = attempt(unrestricted, "result = os.uname().nodename")
    assert outcome.strip() == "OK: 'sandbox'", outcome
    assert os.uname().nodename == host_name  # renamed in the worker's own UTS namespace only
