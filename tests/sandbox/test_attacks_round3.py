"""Third attack round on the local sandbox, by a reviewer who had not written it.

The jail half runs plain, unrestricted Python in the worker (`python_policy=False`) and reaches for
doors the earlier rounds (`test_jail.py`, `test_attacks_syscalls.py`) did not try: filesystem
ioctls on files the worker may read, the machine-wide legacy AIO quota, the LDT, descriptors it
holds, the host's environment, seccomp listeners and Landlock re-configuration, and runaway code
that only the host can stop. Two of them were holes, closed in `jail.py`: `FS_IOC_SETFLAGS`,
`FS_IOC_FSSETXATTR` and `FS_IOC_SETVERSION` changed a host file's inode flags and generation
through a descriptor opened read-only (Landlock covers only device ioctls), and `io_setup` took the
whole machine's AIO quota, so every other process's `io_setup` failed with EAGAIN while the worker
lived. The policy half tries object-graph routes the earlier rounds did not.

Each jail probe prints OK or DENIED; OK would be a hole.
"""

from __future__ import annotations

import ctypes
import os
import textwrap
from pathlib import Path

import pytest

from rlm.sandbox.base import SandboxLimits
from rlm.sandbox.local import LocalSandbox, jail
from tests.sandbox.conftest import assert_refused_and_box_intact, attempt, no_calls, x86_64_only

pytestmark = pytest.mark.skipif(not jail.probe().available, reason=f"no OS jail here: {jail.probe().problem}")


# --- filesystem ioctls on files the worker may read -------------------------------------------------
def _inode_flags(path: Path) -> int:
    fd = os.open(path, os.O_RDONLY)
    try:
        import fcntl
        import struct

        return int(struct.unpack("l", fcntl.ioctl(fd, 0x80086601, b"\0" * 8))[0])  # FS_IOC_GETFLAGS
    finally:
        os.close(fd)


def _generation(path: Path) -> int:
    fd = os.open(path, os.O_RDONLY)
    try:
        import fcntl
        import struct

        return int(struct.unpack("l", fcntl.ioctl(fd, 0x80087601, b"\0" * 8))[0])  # FS_IOC_GETVERSION
    finally:
        os.close(fd)


FS_IOCTLS = {
    # FS_IOC_SETFLAGS with FS_NODUMP_FL added: backups skip the file from then on
    "setflags-nodump": "result = fcntl.ioctl(fd, 0x40086602, struct.pack('l', {flags} | 0x40))",
    # the same through the 32-bit command number
    "setflags32-nodump": "result = fcntl.ioctl(fd, 0x40046602, struct.pack('i', {flags} | 0x40))",
    # FS_IOC_FSSETXATTR (the ioctl twin of file_setattr, which the filter denies by number)
    "fssetxattr-nodump": "result = fcntl.ioctl(fd, 0x401c5820, struct.pack('IIIII8s', 0x80, 0, 0, 0, 0, b''))",
    # FS_IOC_SETVERSION: the inode's generation, which NFS file handles embed
    "setversion": "result = fcntl.ioctl(fd, 0x40087602, struct.pack('l', 12345))",
    # FS_IOC_ENABLE_VERITY: makes the file's content read-only for good where the filesystem has verity
    "enable-verity": (
        "result = fcntl.ioctl(fd, 0x40806685, struct.pack('IIIIQIIQ', 1, 1, 4096, 0, 0, 0, 0, 0) + bytes(88))"
    ),
    # EXT4_IOC_MIGRATE: rewrites the file's block map on disk
    "ext4-migrate": "result = fcntl.ioctl(fd, 0x6609, 0)",
}


@x86_64_only
@pytest.mark.parametrize("action", list(FS_IOCTLS.values()), ids=list(FS_IOCTLS))
def test_filesystem_ioctls_cannot_change_a_readable_host_file(unrestricted, readable_file, action):
    flags, generation = _inode_flags(readable_file), _generation(readable_file)
    opened = f"fd = os.open({str(readable_file)!r}, os.O_RDONLY)\n"
    outcome = attempt(unrestricted, opened + action.replace("{flags}", str(flags)))
    assert outcome.startswith("DENIED: PermissionError"), outcome  # the filter's EPERM, not the filesystem's
    assert (_inode_flags(readable_file), _generation(readable_file)) == (flags, generation)


# Families the first, per-filesystem list did not name; every family but the terminal one is refused.
UNLISTED_FAMILY_IOCTLS = {
    # FS_IOC_GETFSUUID (family 0x15, Linux 6.5): the filesystem's UUID, which identifies the host's disk
    "getfsuuid": "result = fcntl.ioctl(fd, 0x80111500, bytes(17))",
    # FIGETBSZ (family 0): the filesystem's block size
    "figetbsz": "result = fcntl.ioctl(fd, 0x2, b'\\0' * 4)",
    # OCFS2_IOC_GROUP_ADD ('o'): an ocfs2 resize, on a file of that filesystem
    "ocfs2-group-add": "result = fcntl.ioctl(fd, 0x40186f02, bytes(24))",
}


@x86_64_only
@pytest.mark.parametrize("action", list(UNLISTED_FAMILY_IOCTLS.values()), ids=list(UNLISTED_FAMILY_IOCTLS))
def test_ioctl_families_nobody_listed_are_refused_too(unrestricted, readable_file, action):
    opened = f"fd = os.open({str(readable_file)!r}, os.O_RDONLY)\n"
    outcome = attempt(unrestricted, opened + action)
    assert outcome.startswith("DENIED: PermissionError"), outcome  # the filter's EPERM, not ENOTTY


@x86_64_only
def test_the_worker_still_uses_ordinary_ioctls(unrestricted):
    # isatty (TCGETS), FIOCLEX and FIONREAD are what Python itself issues; they stay open.
    code = (
        "fd = os.open(os.__file__, os.O_RDONLY)\n"
        "os.set_inheritable(fd, True)\n"
        "result = (os.isatty(fd), os.get_inheritable(fd), struct.unpack('i', fcntl.ioctl(3, 0x541B, b'\\0' * 4))[0])"
    )
    assert attempt(unrestricted, code).strip() == "OK: (False, True, 0)"


# --- the machine-wide legacy AIO quota, the LDT ------------------------------------------------------
@x86_64_only
def test_the_machine_wide_aio_quota_cannot_be_taken(unrestricted):
    outcome = attempt(unrestricted, "ctx = ctypes.c_ulong(0)\nresult = sc(206, 65000, ctypes.byref(ctx))")
    assert outcome.startswith("DENIED"), outcome
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    context = ctypes.c_ulong(0)
    assert libc.syscall(ctypes.c_long(206), ctypes.c_long(16), ctypes.byref(context)) == 0  # the host's io_setup
    libc.syscall(ctypes.c_long(207), context)  # io_destroy


HELD_DOORS = {
    "io-submit": "result = sc(209, 0, 1, ctypes.byref(ctypes.c_void_p()))",
    "modify-ldt": "result = sc(154, 1, ctypes.create_string_buffer(16), 16)",
    # a new seccomp filter only restricts the worker further; it must not be able to loosen its own
    "seccomp-new-filter-allows-socket": (
        "prog = (ctypes.c_ubyte * 8)(*struct.pack('HBBI', 0x06, 0, 0, 0x7FFF0000))\n"
        "class Fprog(ctypes.Structure):\n"
        "    _fields_ = [('len', ctypes.c_ushort), ('filter', ctypes.c_void_p)]\n"
        "sc(317, 1, 0, ctypes.byref(Fprog(1, ctypes.cast(prog, ctypes.c_void_p))))\n"
        "import socket\nresult = socket.socket()"
    ),
    # a new Landlock domain that handles nothing stacks on the old one and frees nothing
    "landlock-empty-domain-then-read": (
        "ruleset = sc(444, ctypes.create_string_buffer(struct.pack('QQQ', 1, 0, 0)), 24, 0)\n"
        "sc(446, ruleset, 0)\nresult = open('/etc/passwd', 'rb').read(10)"
    ),
    "raise-open-files-limit": (
        "import resource\nresource.setrlimit(resource.RLIMIT_NOFILE, (1 << 20, 1 << 20))\nresult = 1"
    ),
    "memfd-outside-memory-cap": "fd = os.memfd_create('x')\nresult = os.posix_fallocate(fd, 0, 512 << 20)",
    "timer-signal-to-host-thread": (
        "sev = ctypes.create_string_buffer(struct.pack('iiii', 0, 10, 4, host) + bytes(48))\n"
        "result = sc(222, 0, sev, ctypes.byref(ctypes.c_int()))"
    ),
    "sched-core-cookie-from-host": "result = sc(157, 62, 3, host, 0, 0)",
}


@x86_64_only
@pytest.mark.parametrize("action", list(HELD_DOORS.values()), ids=list(HELD_DOORS))
def test_other_kernel_doors_hold(unrestricted, action):
    outcome = attempt(unrestricted, action)
    assert outcome.startswith("DENIED"), outcome


def test_the_worker_holds_no_descriptor_but_its_pipes_null_and_own_statm():
    """Every descriptor a fresh worker holds, each tried for reading: nothing of the host's."""
    with LocalSandbox(SandboxLimits(exec_timeout=5.0), python_policy=False) as box:
        box.load("context")
        code = """
        import os
        held = {}
        for fd in range(1024):
            try:
                target = os.readlink(f'/proc/self/fd/{fd}')
            except OSError:
                continue
            held[fd] = 'pipe' if target.startswith('pipe:') else target
        print(sorted(set(held.values())), os.getpid())
        """
        result = box.execute(textwrap.dedent(code), no_calls)
        assert result.error is None, result.error
        kinds, pid = result.output.rsplit(" ", 1)
    assert kinds == str(sorted({"/dev/null", "pipe", f"/proc/{pid.strip()}/statm"}))


def test_no_api_key_of_the_host_reaches_the_worker(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-round3-secret")
    box = LocalSandbox(SandboxLimits(exec_timeout=5.0, memory_limit_mb=256), python_policy=False)
    try:
        box.start()
        box.load("context")
        code = """
        import os, glob
        seen = [repr(dict(os.environ))]
        for path in ('/proc/self/environ', f'/proc/{os.getppid()}/environ', '/proc/1/environ'):
            try:
                seen.append(repr(open(path, 'rb').read()))
            except OSError as exc:
                seen.append(type(exc).__name__)
        for fd in range(256):
            try:
                seen.append(repr(os.pread(fd, 1 << 16, 0)))
            except OSError:
                pass
        print('sk-round3' in ' '.join(seen), seen[0])
        """
        result = box.execute(textwrap.dedent(code), no_calls)
        assert result.error is None, result.error
        assert result.output.startswith("False"), result.output
    finally:
        box.close()


# --- runaway code: the limits stop it, and the run goes on --------------------------------------------
@pytest.mark.parametrize(
    "code",
    [
        # the step timer's signal blocked (and a CPU timer's), then a busy loop: only the host's hard kill ends it
        "import signal\nsignal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGALRM, signal.SIGPROF])\n"
        "while True:\n    pass",
        # the timer disarmed and its handler replaced
        "import signal\nsignal.setitimer(signal.ITIMER_REAL, 0)\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
        "while True:\n    pass",
        # a wall-clock sleep
        "import time\ntime.sleep(3600)",
        # memory in every form the worker can take it: heap, anonymous mappings ...
        "import mmap\nheld = [mmap.mmap(-1, 64 << 20, flags=mmap.MAP_PRIVATE) for _ in range(64)]",
        # ... and shared ones, which the jail refuses outright since attack round 25 (PermissionError)
        "import mmap\nheld = [mmap.mmap(-1, 64 << 20) for _ in range(64)]",
    ],
    ids=["timer-signal-blocked", "timer-disarmed", "sleep", "mmap-bomb", "shared-mmap-bomb"],
)
def test_runaway_code_is_stopped_and_a_fresh_sandbox_still_works(code):
    limits = SandboxLimits(exec_timeout=1.0, memory_limit_mb=128)
    with LocalSandbox(limits, python_policy=False) as box:
        box.load("context")
        result = box.execute(code, no_calls)
        stopped = ("TimeoutError", "MemoryError", "Cannot allocate memory", "PermissionError")
        assert result.error is not None and any(word in result.error for word in stopped), result.error
        assert box.execute("print(len(context))", no_calls).output == "7\n"
    with LocalSandbox(limits) as fresh:
        fresh.load("abc")
        assert fresh.execute("len(context)", no_calls).output == "3\n"


def test_a_worker_cannot_leave_the_process_group_the_host_kills():
    """The worker's process group and session stay its own pid's, which the host signals."""
    with LocalSandbox(SandboxLimits(exec_timeout=5.0), python_policy=False) as box:
        box.load("context")
        code = """
        import os
        for leave in (os.setsid, lambda: os.setpgid(0, 0), lambda: os.setpgid(0, os.getppid())):
            try:
                leave()
            except OSError:
                pass
        print(os.getpid(), os.getpgid(0), os.getsid(0))
        """
        result = box.execute(textwrap.dedent(code), no_calls)
        assert result.error is None, result.error
        pid, group, session = result.output.split()
        assert group == session == pid


# --- the Python policy, with the jail on ---------------------------------------------------------------
POLICY_ATTEMPTS = {
    "reduce-getattr-to-gi-frame": "import functools\ng = (x for x in [1])\nfunctools.reduce(getattr, ['gi_frame'], g)",
    "partial-getattr-to-tb-frame": (
        "import functools\ntry:\n    1 / 0\nexcept ZeroDivisionError as e:\n"
        "    functools.partial(getattr, e)('__traceback__')"
    ),
    "unbound-str-format-through-map": "list(map(getattr(str, 'format'), ['{0.__class__}'], [1]))",
    "format-map-of-a-str-subclass": "class S(str):\n    pass\ngetattr(S('{x.__class__}'), 'format_map')",
    "property-fget-globals": (
        "import csv\nf = getattr(getattr(csv.DictReader, 'fieldnames'), 'fget')\ngetattr(f, '__globals__')"
    ),
    "attribute-error-obj-then-underscore": (
        "import json\ntry:\n    getattr(json, 'nope')\nexcept AttributeError as e:\n    getattr(e.obj, '_names')"
    ),
    "random-bound-method-self": "import random\ngetattr(random.random, '__self__')",
    "lru-cache-wrapped": "import functools\ngetattr(functools.lru_cache(len), '__wrapped__')",
    "class-body-vars": "class X:\n    vars()['__del__'] = print",
    "metaclass-from-type-of-class": "class A:\n    pass\nclass B(A, metaclass=type(A)):\n    pass",
    "match-class-pattern-attribute": "match (x for x in [1]):\n    case object(gi_frame=f):\n        print(f)",
    "setattr-dunder-on-own-class": "class X:\n    pass\nsetattr(X, '__del__', print)",
    "setattr-class-of-own-instance": "class X:\n    pass\nclass Y:\n    pass\nsetattr(X(), '__class__', Y)",
    "exception-with-traceback-frame": (
        "try:\n    1 / 0\nexcept ZeroDivisionError as e:\n    getattr(e.with_traceback(None), 'tb_frame')"
    ),
    "namedtuple-field-named-dunder": "import collections\ncollections.namedtuple('N', ['__class__'])",
}


@pytest.mark.parametrize("code", list(POLICY_ATTEMPTS.values()), ids=list(POLICY_ATTEMPTS))
def test_policy_routes_are_refused(restricted, code):
    assert_refused_and_box_intact(restricted, code)


def test_a_facade_made_by_the_code_answers_only_its_own_names(restricted):
    # guarded_getattr reads facades through their own __getattr__: a facade the code builds holds
    # only the code's values, never a module's internals.
    code = "import re\nF = type(re)\nclass G(F):\n    pass\nprint(getattr(G('x', {'__globals__': 5}), '__globals__'))"
    result = restricted.execute(code, no_calls)
    assert result.error is None and result.output == "5\n"
