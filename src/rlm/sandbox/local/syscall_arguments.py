"""Which arguments of syscalls the worker keeps are refused: the jail's seccomp rules by argument.

`seccomp_filter` lists the whole syscalls denied by name and number; this module says, for the calls
the runtime still needs (`ioctl`, `fcntl`, `madvise`, `prctl`, `mmap` and calls that take a pid),
which of their arguments are refused, as (syscall name, argument index, comparison, mask or value,
value) tuples that `jail` hands to `seccomp_filter` to turn into libseccomp's comparisons. Only the
standard library: the worker loads it as a top-level module before anything else arrives, as it
loads `jail`.

Where a call's argument names an action (an ioctl family, madvise advice, a prctl option), the
rules are an allowlist: a list of what to refuse held only for what someone had looked at (the
ioctl families of filesystems nobody named; KSM's opt-ins, attack round 21).
"""

from __future__ import annotations

import mmap
from collections.abc import Iterable

CMP_NE = 1
CMP_MASKED_EQ = 7
INT_MASK = 0xFFFFFFFF  # the kernel reads `int` arguments from the low 32 bits only

# (syscall name, argument index, comparison, datum a, datum b): refused when the comparison holds.
Rule = tuple[str, int, int, int, int]

PR_SET_SECCOMP = 22

# fcntl commands refused, each for what it reaches beyond the worker:
# - F_SETOWN, F_SETSIG, F_SETOWN_EX make the kernel signal another process (Landlock scopes
#   signals only from ABI 6 on);
# - F_SETLEASE and F_NOTIFY: a lease or a directory watch reaches other processes' use of a file;
# - record locks, POSIX and open-file (F_GETLK/F_SETLK/F_SETLKW 5-7, their 32-bit *64 twins 12-14,
#   F_OFD_* 36-38): a read lock through a read-only descriptor blocked every writer of a file the
#   worker may read, as flock did (refused above), and F_GETLK told other processes' pids;
# - F_SET_RW_HINT and F_SET_FILE_RW_HINT (1036, 1038) changed a readable host file's inode (its
#   write-life hint) through a read-only descriptor, as FS_IOC_SETVERSION did.
# Python's runtime uses none of them (it asks F_GETFD/F_SETFD/F_GETFL/F_SETFL and F_DUPFD_CLOEXEC).
F_REFUSED_COMMANDS = (8, 10, 15, 1024, 1026, 5, 6, 7, 12, 13, 14, 36, 37, 38, 1036, 1038)

# ioctl commands are allowed by family, matched on the command's type byte (bits 8-15 in every
# encoding), and only the terminal family 'T' is: Python's runtime uses FIOCLEX/FIONCLEX
# (set_inheritable), TCGETS (isatty), TIOCGWINSZ and FIONREAD, all 'T'. Landlock governs ioctls on
# devices only; through a descriptor opened read-only, filesystem families ('f' FS_IOC_SETFLAGS and
# ext4, 'X' FS_IOC_FSSETXATTR and XFS, 'v' FS_IOC_SETVERSION, btrfs 0x94, f2fs 0xf5, ocfs2, ...)
# changed a host file's inode flags and generation. A list of the families to refuse held only for
# the filesystems someone had looked at, so every other family is refused. The worker has no
# terminal (its session is new, its stdio are pipes), so 'T' reaches none.
IOCTL_TYPE_ALLOWED = 0x54

# madvise advice the runtime uses, all on the worker's own memory: MADV_NORMAL 0, DONTNEED 4, FREE
# 8, DONTFORK/DOFORK 10/11, HUGEPAGE/NOHUGEPAGE 14/15, DONTDUMP/DODUMP 16/17, WIPEONFORK/KEEPONFORK
# 18/19, DONTNEED_LOCKED 24 (glibc's and CPython's allocators free and tune their pages with
# these). Refused, among all else: readahead and page-cache advice (RANDOM, SEQUENTIAL, WILLNEED,
# COLD, PAGEOUT, POPULATE_*: a mapped file moved through the machine's page cache, round 19), KSM's
# MERGEABLE/UNMERGEABLE (the worker's pages merged with other processes': a deduplication side
# channel, round 21), COLLAPSE, REMOVE, and the guard and poison advice.
MADV_ALLOWED = frozenset({0, 4, 8, 10, 11, 14, 15, 16, 17, 18, 19, 24})

# prctl options the worker may use once jailed: reading its own state (PR_GET_*), naming its
# threads (PR_SET_NAME 15), and what loading its last seccomp filter takes (PR_SET_NO_NEW_PRIVS 38,
# PR_SET_SECCOMP 22; that filter then refuses PR_SET_SECCOMP). Refused, among all else:
# PR_SET_PDEATHSIG (it would outlive the host), PR_SET_VMA (kernel memory per mapping, round 17),
# PR_SET_MEMORY_MERGE (KSM, round 21), PR_SET_MM, PR_SCHED_CORE (another process's scheduling),
# PR_SET_PTRACER, PR_SET_CHILD_SUBREAPER, PR_SET_THP_DISABLE, PR_SET_TIMERSLACK.
PR_ALLOWED = frozenset({
    2, 3, 5, 7, 9, 11, 13, 15, 16, 19, 21, 23, 25, 27, 30, 34, 37, 39, 40, 42, 46, 52, 56, 58, 68,  # PR_GET_*, SET_NAME
    PR_SET_SECCOMP, 38,
})  # fmt: skip

# mmap flags refused, each for kernel memory outside the worker's memory cap, held for its life:
# - shared anonymous memory (MAP_SHARED, or MAP_SHARED_VALIDATE which holds its bit, with
#   MAP_ANONYMOUS): the kernel backs each such mapping with a shmem file of its own, an inode, a
#   dentry and a struct file, what memfd_create made before it was refused (round 17; 15,000
#   mappings held 23 MB of slab under the host's mapping bound, round 25);
# - MAP_HUGETLB: pages from the machine's huge page pool, which every process shares.
# CPython's and glibc's allocators map private memory only. Values from the platform's mmap module
# (MIPS numbers MAP_ANONYMOUS otherwise); MAP_HUGETLB is 0x40000 where Linux has it.
MAP_SHARED_ANONYMOUS = mmap.MAP_SHARED | getattr(mmap, "MAP_ANONYMOUS", 0x20)
MAP_HUGETLB = 0x40000

# Every advice and option the kernel defines is below 128 but the poison and guard advice (100-103)
# and the magic-numbered options (PR_SET_VMA, PR_SET_PTRACER, PR_GET_AUXV), all refused.
_ACTION_VALUES = 128

# Calls that read another process's limits, scheduling or priority when given its pid (or a process
# group or user id): allowed only for 0, "this process". Otherwise they told the host's limits and
# nice values and which pids exist. (syscall name, index of the pid argument)
SELF_ONLY_PID_ARGUMENTS = (
    ("prlimit64", 0), ("getpriority", 1), ("ioprio_get", 1), ("getpgid", 0), ("getsid", 0),
    ("sched_getaffinity", 0), ("sched_getparam", 0), ("sched_getscheduler", 0), ("sched_getattr", 0),
    ("sched_rr_get_interval", 0),
)  # fmt: skip

_PRIO_PROCESS, _IOPRIO_WHO_PROCESS = 0, 1


def refused_arguments() -> list[Rule]:
    """Every argument rule of the jail's main filter."""
    rules: list[Rule] = []
    rules += [("madvise", 2, CMP_MASKED_EQ, mask, value) for mask, value in values_refused_except(MADV_ALLOWED)]
    rules += [("prctl", 0, CMP_MASKED_EQ, mask, value) for mask, value in values_refused_except(PR_ALLOWED)]
    rules += [
        (name, 1, CMP_MASKED_EQ, INT_MASK, command) for name in ("fcntl", "fcntl64") for command in F_REFUSED_COMMANDS
    ]
    rules += [("ioctl", 1, CMP_MASKED_EQ, mask, value) for mask, value in ioctl_families_refused(IOCTL_TYPE_ALLOWED)]
    for name in ("mmap", "mmap2"):  # mmap2: 32-bit systems' (libseccomp skips a name the system lacks)
        rules += [(name, 3, CMP_MASKED_EQ, flags, flags) for flags in (MAP_SHARED_ANONYMOUS, MAP_HUGETLB)]
    # Compared on all 64 bits: a pid whose low 32 bits are 0 is this process to the kernel, refused too.
    rules += [(name, index, CMP_NE, 0, 0) for name, index in SELF_ONLY_PID_ARGUMENTS]
    # ... and their "who" 0 means this process only when "which" names a process: as PRIO_USER or
    # IOPRIO_WHO_USER it means every process of this user on the host
    rules += [("getpriority", 0, CMP_NE, _PRIO_PROCESS, 0), ("ioprio_get", 0, CMP_NE, _IOPRIO_WHO_PROCESS, 0)]
    return rules


def values_refused_except(allowed: Iterable[int], below: int = _ACTION_VALUES) -> list[tuple[int, int]]:
    """(mask, value) pairs over an `int` argument that together match every value but `allowed`.

    libseccomp compares an argument once per rule, so "not one of these" cannot be one rule. Values
    from `below` (a power of two) up are matched by their set bits, one rule per bit of the low 32;
    those under it by aligned blocks of refused values (as a router aggregates addresses), so a
    dozen allowed values cost about 40 rules, not one per refused value.
    """
    allowed = frozenset(allowed)
    pairs = [(1 << bit, 1 << bit) for bit in range(below.bit_length() - 1, 32)]
    start = 0
    while start < below:
        if start in allowed:
            start += 1
            continue
        size = 1
        while start % (2 * size) == 0 and start + 2 * size <= below and _none_in(allowed, start, 2 * size):
            size *= 2
        pairs.append((INT_MASK ^ (size - 1), start))
        start += size
    return pairs


def _none_in(allowed: frozenset[int], start: int, size: int) -> bool:
    return allowed.isdisjoint(range(start, start + size))


def ioctl_families_refused(allowed: int) -> list[tuple[int, int]]:
    """(mask, value) pairs over an ioctl command that together match every type byte but `allowed`.

    A rule per refused family (255) doubled the filter's build at every worker start. For each
    bit of the type byte, from the top: the families that agree with `allowed` above that bit and
    differ in it. Any other family differs first in exactly one such bit: eight rules.
    """
    pairs = []
    for bit in range(7, -1, -1):
        mask = (0xFF << bit) & 0xFF
        pairs.append((mask << 8, ((allowed ^ (1 << bit)) & mask) << 8))
    return pairs
