"""Fifth attack round on the local sandbox, after the step timer became wall time (ITIMER_REAL) and
ioctl was narrowed to the terminal family.

The jail half runs plain Python in the worker (`python_policy=False`), as a hole in the policy
would: the i386 syscall ABI through `int 0x80`, ioctl commands with high bits or in families that
reach signals (FIOSETOWN), the terminal family on every descriptor the worker holds, fcntl commands
that reach what the refused ioctls and `flock` did, and timers or signals the code leaves behind
to fire in the worker's own code between steps. The policy half tries to make the step's timer
fire where the worker's trusted code runs: RecursionErrors at every depth around a host call, and C
work that seems uninterruptible.

Two fcntl routes were open when this round was written (the first two tests): POSIX and OFD record
locks on a file the worker may read (the filter refuses `flock` for exactly this reason), and
F_SET_RW_HINT, which changes a host file's inode through a descriptor opened read-only.
"""

from __future__ import annotations

import fcntl
import os
import struct
import textwrap
import time

import pytest

from rlm.sandbox.base import SandboxLimits
from rlm.sandbox.local import LocalSandbox, jail
from tests.sandbox.conftest import RAW, no_calls, x86_64_only

pytestmark = pytest.mark.skipif(not jail.probe().available, reason=f"no OS jail here: {jail.probe().problem}")


def run_plain(box: LocalSandbox, code: str) -> str:
    result = box.execute(RAW + textwrap.dedent(code), no_calls)
    assert result.error is None, result.error
    return result.output


def echo(fn, args, kwargs):
    return f"re:{args[0]}"


# --- fcntl reaches what flock and the refused ioctls reached (holes when written) --------------------
@pytest.mark.parametrize("command", [fcntl.F_SETLK, fcntl.F_SETLKW, 37, 38], ids=["SETLK", "SETLKW", "OFD", "OFDW"])
def test_files_it_may_read_cannot_be_record_locked_against_other_processes(unrestricted, readable_file, command):
    # The filter refuses flock because a lock on a file the worker may read blocks other processes
    # that use it; a read lock through fcntl does the same to every writer that locks the file.
    code = f"""
    fd = os.open({str(readable_file)!r}, os.O_RDONLY)
    try:
        fcntl.fcntl(fd, {command}, struct.pack('hhqqi4x', fcntl.F_RDLCK, 0, 0, 0, 0))
        held = fd  # kept open: the lock lives as long as the worker
        print('LOCKED')
    except OSError as exc:
        print('DENIED', exc)
    """
    outcome = run_plain(unrestricted, code)
    host_fd = os.open(readable_file, os.O_RDWR)
    try:
        fcntl.lockf(host_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.lockf(host_fd, fcntl.LOCK_UN)
        host_locked = True
    except BlockingIOError:  # EAGAIN: the worker's read lock blocks every writer of the file
        host_locked = False
    finally:
        os.close(host_fd)
    assert (outcome.startswith("DENIED"), host_locked) == (True, True), outcome


def test_a_readable_files_inode_cannot_be_changed_through_its_write_hint(unrestricted, readable_file):
    # F_SET_RW_HINT sets the inode's write-life hint through a descriptor opened read-only, as
    # FS_IOC_SETVERSION set its generation; other processes read it back with F_GET_RW_HINT.
    code = f"""
    fd = os.open({str(readable_file)!r}, os.O_RDONLY)
    try:
        fcntl.fcntl(fd, 1036, struct.pack('Q', 5))  # F_SET_RW_HINT, RWH_WRITE_LIFE_EXTREME
        print('CHANGED')
    except OSError as exc:
        print('DENIED', exc)
    """
    outcome = run_plain(unrestricted, code)
    host_fd = os.open(readable_file, os.O_RDONLY)
    try:
        hint = struct.unpack("Q", fcntl.fcntl(host_fd, 1035, bytes(8)))[0]  # F_GET_RW_HINT
    finally:
        os.close(host_fd)
    assert (outcome.startswith("DENIED"), hint) == (True, 0), outcome


# --- other ABIs and ioctl encodings ------------------------------------------------------------------
@x86_64_only
def test_i386_syscalls_through_int_0x80_kill_the_worker_and_the_session_comes_back():
    # The filter is built for x86_64; a 32-bit syscall (here getpid through int 0x80) carries
    # another audit arch and must not reach the kernel past the rules.
    code = """
    import ctypes, mmap
    page = mmap.mmap(-1, 4096, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    page.write(bytes([0xB8, 20, 0, 0, 0, 0xCD, 0x80, 0xC3]))  # mov eax, 20; int 0x80; ret
    function = ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(page)))
    print('i386 getpid answered', function())
    """
    with LocalSandbox(SandboxLimits(exec_timeout=5.0), python_policy=False) as box:
        box.load("context")
        result = box.execute(textwrap.dedent(code), no_calls)
        assert result.restarted and "SIGSYS" in (result.error or ""), (result.output, result.error)
        assert box.execute("print(len(context))", no_calls).output == "7\n"


IOCTL_REFUSED = {
    # the type byte is bits 8-15 of the low 32 bits; bits above 32 must not hide a refused family
    "getflags-bit-32": "(1 << 32) | 0x80086601",
    "getflags-high-word": "0xFFFFFFFF00000000 | 0x80086601",
    # FIOSETOWN and SIOCSPGRP (family 0x89) point a descriptor's SIGIO at a process, like F_SETOWN
    "fiosetown-host": "0x8901",
    "siocspgrp-host": "0x8902",
    "ficlone": "0x40049409",
    "fibmap": "0x1",
}


@x86_64_only
@pytest.mark.parametrize("command", list(IOCTL_REFUSED.values()), ids=list(IOCTL_REFUSED))
def test_ioctl_commands_outside_the_terminal_family_are_refused_whatever_their_high_bits(unrestricted, command):
    code = f"""
    fd = os.open(os.__file__, os.O_RDONLY)
    host = ctypes.c_int(os.getppid())
    try:
        print('OK', sc(16, fd, {command}, ctypes.byref(host)))
    except OSError as exc:
        print('DENIED', errno.errorcode[exc.errno])
    """
    assert run_plain(unrestricted, code).strip() == "DENIED EPERM"


@x86_64_only
def test_the_terminal_family_reaches_no_terminal_on_any_descriptor(unrestricted):
    # TIOCSTI (type into a terminal), TIOCSCTTY, TIOCCONS, TIOCGSID, TIOCGPTPEER, TIOCSETD, TUNSETIFF:
    # all 'T', allowed by the filter; the worker must hold no descriptor they act on.
    code = """
    opened = os.open(os.__file__, os.O_RDONLY)
    fds = [fd for fd in range(64) if fd == opened or os.path.exists(f'/proc/self/fd/{fd}')]
    assert len(fds) >= 5, fds  # fds 0-2, the channel's two pipes, statm, the file just opened
    scratch = ctypes.create_string_buffer(64)
    answered = []
    for fd in fds:
        for command in (0x5412, 0x540E, 0x541D, 0x5429, 0x5441, 0x5423, 0x400454CA):
            try:
                sc(16, fd, command, scratch)
                answered.append((fd, hex(command)))
            except OSError:
                pass
    print(answered)
    """
    assert run_plain(unrestricted, code).strip() == "[]"


# --- timers and signals left behind by the code (policy off) --------------------------------------------
def test_a_posix_timer_whose_handler_spins_between_steps_ends_in_a_restart():
    # The worker's own timer is off between steps; one the code created fires while the worker
    # waits for the next request, and its handler takes the worker over. The host's deadline holds.
    code = """
    import ctypes, signal, struct
    def spin(signum, frame):
        while True:
            pass
    signal.signal(signal.SIGUSR1, spin)
    libc = ctypes.CDLL(None, use_errno=True)
    timer = ctypes.c_void_p()
    event = ctypes.create_string_buffer(struct.pack('Pii', 0, signal.SIGUSR1, 0) + bytes(52))
    assert libc.timer_create(1, event, ctypes.byref(timer)) == 0
    later = ctypes.create_string_buffer(struct.pack('qqqq', 0, 0, 0, 500_000_000))  # once, in 0.5 s
    assert libc.timer_settime(timer, 0, later, None) == 0
    """
    with LocalSandbox(SandboxLimits(exec_timeout=1.0), python_policy=False) as box:
        box.load("context")
        first = box.execute(textwrap.dedent(code), no_calls)
        if first.error is not None:  # the jail refuses timer_create since round 11: nothing is armed
            assert "AssertionError" in first.error, first.error
            assert box.execute("print(len(context))", no_calls).output == "7\n"
            return
        time.sleep(1.5)  # the handler now spins in the worker's request loop
        result = box.execute("print(len(context))", no_calls)
        assert result.restarted and "TimeoutError" in (result.error or ""), (result.output, result.error)
        assert box.execute("print(len(context))", no_calls).output == "7\n"


def test_a_worker_that_stops_itself_is_killed_and_restarted():
    # kill and tgkill are refused, but a POSIX timer can deliver SIGSTOP to the worker itself.
    code = """
    import ctypes, signal, struct, time
    libc = ctypes.CDLL(None, use_errno=True)
    timer = ctypes.c_void_p()
    event = ctypes.create_string_buffer(struct.pack('Pii', 0, signal.SIGSTOP, 0) + bytes(52))
    libc.timer_create(1, event, ctypes.byref(timer))
    libc.timer_settime(timer, 0, ctypes.create_string_buffer(struct.pack('qqqq', 0, 0, 0, 10**8)), None)
    time.sleep(30)
    """
    with LocalSandbox(SandboxLimits(exec_timeout=1.0), python_policy=False) as box:
        box.load("context")
        result = box.execute(textwrap.dedent(code), no_calls)
        # Stopped, the worker is killed and restarted; since round 11 the jail refuses timer_create,
        # so it sleeps until its own step timer ends the step.
        assert "TimeoutError" in (result.error or ""), result.error
        assert box.execute("print(len(context))", no_calls).output == "7\n"


def test_hostile_timers_left_armed_cannot_break_the_host():
    # Handlers that raise, fired every 100 us of CPU inside the worker's result and request code:
    # the worker may die or answer, but the host reads a result or restarts it, and goes on.
    code = """
    import signal
    def hostile(signum, frame):
        raise TimeoutError('hostile')
    for signum, timer in ((signal.SIGPROF, signal.ITIMER_PROF), (signal.SIGVTALRM, signal.ITIMER_VIRTUAL)):
        signal.signal(signum, hostile)
        signal.setitimer(timer, 0.0001, 0.0001)
    print('x' * 100000)
    """
    with LocalSandbox(SandboxLimits(exec_timeout=2.0), python_policy=False) as box:
        box.load("context")
        for _ in range(3):
            result = box.execute(textwrap.dedent(code), no_calls)
            assert result.restarted or result.output.startswith("x"), result.error
        box.execute(
            "import signal\nsignal.setitimer(signal.ITIMER_PROF, 0)\nsignal.setitimer(signal.ITIMER_VIRTUAL, 0)",
            no_calls,
        )
        assert box.execute("print(len(context))", no_calls).output == "7\n"


# --- the step timer against trusted code (policy on) -----------------------------------------------------
def test_recursion_errors_at_every_depth_around_a_host_call_keep_the_channel_and_the_timer():
    # A RecursionError inside the worker's protocol code between a call frame and its reply would
    # shift every later reply; one that skipped the timer's restore would leave the step untimed.
    code = """
    def dive(n, k):
        if n > 0:
            return dive(n - 1, k)
        try:
            return 'ok' if llm_query('p' + str(k)) == 're:p' + str(k) else 'WRONG'
        except RecursionError:
            return 'rec'
    outcomes = set()
    # Every third depth where the RecursionError moves through the protocol code (981-992 here), a
    # few below: each call is a round trip to the host, and all 367 of 0-1100 took 4-6 s on a loaded
    # machine (the limit was 2 s), so the step was killed before its spin.
    for depth in [*range(0, 900, 90), *range(900, 1100, 3)]:
        try:
            outcomes.add(dive(depth, depth))
        except RecursionError:
            outcomes.add('outer')
    print(sorted(outcomes), [llm_query('s' + str(i)) for i in range(3)])
    while True:
        pass
    """
    with LocalSandbox(SandboxLimits(exec_timeout=4.0)) as box:
        box.load("context")
        result = box.execute(textwrap.dedent(code), echo)
        assert not result.restarted, result.error
        assert result.output == "['ok', 'outer', 'rec'] ['re:s0', 're:s1', 're:s2']\n", result.output
        assert "TimeoutError" in (result.error or ""), result.error  # the timer still ran after it all


@pytest.mark.parametrize(
    "work",
    ["import re\nre.match('(a+)+$', 'a' * 40 + 'b')", "pow(7, 10**8)", "import math\nmath.factorial(10**6)"],
    ids=["regex-backtracking", "huge-pow", "huge-factorial"],
)
def test_long_c_work_meets_the_step_timeout_and_keeps_the_variables(work):
    with LocalSandbox(SandboxLimits(exec_timeout=1.0)) as box:
        box.load("context")
        result = box.execute("kept = 41\n" + work, no_calls)
        assert "TimeoutError" in (result.error or ""), result.error
        assert box.execute("print(kept + 1, len(context))", no_calls).output == "42 7\n"


def test_host_calls_in_a_loop_that_swallows_timeouts_still_end_with_the_hard_kill():
    # Host time is not counted, and each call restores the timer; the code's own time still is.
    calls = []

    def counting(fn, args, kwargs):
        calls.append(fn)
        return "x"

    code = "while True:\n    try:\n        llm_query('again')\n    except TimeoutError:\n        pass"
    with LocalSandbox(SandboxLimits(exec_timeout=1.0)) as box:
        box.load("context")
        result = box.execute(code, counting)
        # The kill often lands while a call frame is on its way: the host names the time limit then too.
        assert result.restarted and "TimeoutError" in (result.error or ""), result.error
        assert box.execute("print(len(context))", no_calls).output == "7\n"
    assert calls
