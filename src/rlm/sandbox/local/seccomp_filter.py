"""The seccomp filters of the sandbox worker's OS jail, built through libseccomp.

libseccomp knows each architecture's syscall numbers. `jail` loads the main filter with
`DENIED_SYSCALLS` (no sockets, no new processes or programs, no signals to others, no ptrace, no
mounts or namespaces, no privileged or kernel-facing calls, no file-metadata changes that Landlock
does not cover), every unified number but `UNIFIED_ALLOWED`, and `syscall_arguments`' rules by
argument; later a last one that seals the resource limits. Refused calls fail with EPERM, so the
code sees an OSError instead of a dead worker. Why each is here: docs/SECURITY.md. Loaded by the
worker as a top-level module, beside its siblings, so it imports only the standard library (and them).
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Sequence

# The worker loads this module as a top-level one, beside its siblings; the host, from the package.
if __package__:
    from .jail_error import JailError
else:  # pragma: no cover - runs in the worker, whose coverage is not measured
    from jail_error import JailError  # type: ignore[import-not-found,no-redef,unused-ignore]

# Syscalls the worker never needs and hostile code would want. Names unknown on an architecture
# (e.g. `fork` on arm64, which only has clone) are skipped by libseccomp's resolver.
DENIED_SYSCALLS = (
    # network and IPC endpoints (the worker talks to the host over inherited pipes only); SysV and
    # POSIX IPC reach other processes' shared memory and leave objects behind; pipes enlarged with
    # F_SETPIPE_SZ hold kernel memory outside the address-space cap
    "socket", "socketpair", "pipe", "pipe2",
    "shmget", "shmat", "shmdt", "shmctl", "msgget", "msgsnd", "msgrcv", "msgctl", "semget",
    "semop", "semtimedop", "semctl", "mq_open", "mq_unlink", "mq_timedsend", "mq_timedreceive",
    "mq_notify", "mq_getsetattr",
    # new processes and programs
    "fork", "vfork", "clone", "clone3", "execve", "execveat",
    # reaching other processes
    "kill", "tkill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "pidfd_open",
    "pidfd_send_signal", "pidfd_getfd", "ptrace", "process_vm_readv", "process_vm_writev", "kcmp",
    "setsid", "setpgid", "get_robust_list", "process_madvise", "process_mrelease",
    "migrate_pages", "move_pages",
    # other processes' scheduling, and watching the host's files change
    "setpriority", "sched_setaffinity", "sched_setscheduler", "sched_setparam", "sched_setattr",
    "ioprio_set", "inotify_init", "inotify_init1", "inotify_add_watch", "fanotify_mark",
    # leases and locks on the files it may read would block other processes that use them
    "flock",
    # the mount table, which /proc's mountinfo would show (Linux 6.8; needs a libseccomp that
    # knows them, or they are skipped like any name unknown on this architecture)
    "listmount", "statmount",
    # namespaces, mounts, root changes
    "unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "fsopen", "fsconfig",
    "fsmount", "fspick", "move_mount", "open_tree", "mount_setattr",
    # file metadata and handles that Landlock does not cover
    "chmod", "fchmod", "fchmodat", "fchmodat2", "chown", "fchown", "lchown", "fchownat",
    "setxattr", "lsetxattr", "fsetxattr", "removexattr", "lremovexattr", "fremovexattr",
    # extended attributes hold what stat does not show (download URLs, tokens, ACLs)
    "getxattr", "lgetxattr", "fgetxattr", "listxattr", "llistxattr", "flistxattr",
    "utime", "utimes", "utimensat", "futimesat", "truncate", "name_to_handle_at",
    "open_by_handle_at", "mknod", "mknodat",
    # identity and privilege
    "setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setfsuid", "setfsgid",
    "setgroups", "capset", "personality",
    # capget takes its target pid inside a struct the filter cannot read: it told host processes'
    # capabilities, and which pids exist (the worker's own are all dropped, see jail._drop_capabilities)
    "capget",
    # sysinfo is not namespaced: it told the machine's process count and load; statfs told the
    # filesystem's id (derived from the disk's UUID on ext4), free space and inode counts
    "sysinfo", "statfs", "fstatfs", "statfs64", "fstatfs64", "ustat",
    # the machine's whole disk cache: sync/syncfs flush it (a loop slows every process's I/O), and so
    # do fsync/fdatasync, even of a clean file opened read-only (ext4 sends the disk a cache flush
    # each time: 51,000 in 1.5 s, final attack of session 12; the worker writes no file);
    # fadvise/readahead push readable files out of the shared page cache or pull them in
    "sync", "syncfs", "fsync", "fdatasync", "fadvise64", "fadvise64_64", "arm_fadvise64_64", "readahead",
    # kernel-facing interfaces with a history of escapes, or that bypass seccomp (io_uring)
    "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter",
    "io_uring_register", "keyctl", "add_key", "request_key", "fanotify_init", "modify_ldt",
    # legacy AIO: io_setup draws on one quota for the whole machine (fs.aio-max-nr); a worker that
    # took it made every other process's io_setup fail with EAGAIN while it lived
    "io_setup", "io_destroy", "io_submit", "io_cancel", "io_getevents", "io_pgetevents",
    # per-user kernel quotas shared with the host's user: each POSIX timer takes a slot of the
    # user's RLIMIT_SIGPENDING (a worker holding them all made the host's own timer_create fail);
    # epoll watches are kernel memory outside the address-space cap, on the user's
    # max_user_watches (the worker's Python uses neither)
    "timer_create", "epoll_create", "epoll_create1",
    # kernel memory per mapping beyond what the host's mapping bound prices (kernel_memory.py): each
    # memfd mapped is a shmem inode and dentry of its own (~1.9 KB; 16,000 held 30 MB, attack round
    # 17), and memory policies add to every mapping they split; the runtime uses none of them
    "memfd_create", "mbind", "set_mempolicy",
    # pipes holding page references instead of copies: vmsplice put one byte of each of 256 huge
    # pages into the channel pipe, ~400 MB held outside the worker's cap while its sub-call ran
    # (attack round 19); the worker writes its frames with write()
    "vmsplice", "splice", "tee",
    # sendfile into the channel pipe passes page references the same way (attack round 20)
    "sendfile", "sendfile64",
    # the machine itself
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load", "reboot",
    "swapon", "swapoff", "acct", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
    "sethostname", "setdomainname", "iopl", "ioperm", "quotactl", "syslog", "vhangup",
)  # fmt: skip


# Since Linux 5.1 every architecture numbers new syscalls alike, from 424 up. A denylist of names
# only holds for names this machine's libseccomp knows: 2.5.4 silently skipped listmount,
# setxattrat, removexattrat and file_setattr on a 6.18 kernel, and setxattrat wrote a
# `security.capability` onto a host file. So every number from 424 up is denied by number, whether
# libseccomp can name it or not, except these, which the runtime may use and which reach nothing:
# close_range, openat2, faccessat2, epoll_pwait2, futex_waitv, map_shadow_stack,
# futex_wake/wait/requeue, mseal. A syscall added later is closed until someone reviews it. The
# Landlock calls are refused too once the jail is entered: they only restrict further, but each
# rule is kernel memory outside the address-space cap (attack round 12: 713,100 rules from 12
# rulesets over the standard library's names held 47 MB of the kernel's).
UNIFIED_SYSCALLS_FROM = 424
UNIFIED_SYSCALLS_TO = 511  # the highest number refused; 469 is the newest in Linux 6.18
UNIFIED_ALLOWED = frozenset({436, 437, 439, 441, 449, 453, 454, 455, 456, 462})

_SCMP_ACT_ALLOW = 0x7FFF0000


class ArgCompare(ctypes.Structure):
    """libseccomp's `struct scmp_arg_cmp`."""

    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


def _scmp_act_errno(code: int) -> int:
    return 0x00050000 | (code & 0xFFFF)


_libseccomp: ctypes.CDLL | None = None


def load_libseccomp() -> ctypes.CDLL:
    """libseccomp, loaded once (before Landlock closes the library folders)."""
    global _libseccomp
    if _libseccomp is None:
        _libseccomp = _open_libseccomp()
    return _libseccomp


def _open_libseccomp() -> ctypes.CDLL:
    # Deliberately not the `pyseccomp` package: its import runs `ldconfig` twice (slow at every
    # worker start) and it is unmaintained; libseccomp itself is the well-kept part, and it is
    # what turns syscall names into this architecture's numbers.
    try:
        lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    except OSError as exc:
        raise JailError("libseccomp is not installed (install the libseccomp2 package of your distribution)") from exc
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.restype = ctypes.c_int
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.restype = ctypes.c_int
    lib.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint, ctypes.POINTER(ArgCompare)
    ]  # fmt: skip
    lib.seccomp_load.restype = ctypes.c_int
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    return lib


def load_filter(
    names: tuple[str, ...],
    conditional: list[tuple[str, ArgCompare]] | None = None,
    numbers: Sequence[int] = (),
) -> None:
    """Deny `names` (skipped where unknown on this architecture), `numbers` (by number, known or
    not), and each conditional (name, argument compare)."""
    lib = load_libseccomp()
    context = lib.seccomp_init(_SCMP_ACT_ALLOW)
    if not context:
        raise JailError("seccomp_init failed")
    try:
        deny = _scmp_act_errno(errno.EPERM)
        rules: list[tuple[str, list[ArgCompare]]] = [(name, []) for name in names] + [
            (name, [when]) for name, when in conditional or []
        ]
        for name, conditions in rules:
            number = lib.seccomp_syscall_resolve_name(name.encode())
            if number < 0:
                continue  # not a syscall on this architecture
            array = (ArgCompare * max(1, len(conditions)))(*conditions)
            if lib.seccomp_rule_add_array(context, deny, number, len(conditions), array) != 0:
                raise JailError(f"seccomp could not deny {name}")
        for number in numbers:
            if lib.seccomp_rule_add_array(context, deny, number, 0, (ArgCompare * 1)()) != 0:
                raise JailError(f"seccomp could not deny syscall {number}")
        result = lib.seccomp_load(ctypes.c_void_p(context))
        if result != 0:
            raise JailError(f"seccomp_load failed: {os.strerror(-result)}")
    finally:
        lib.seccomp_release(ctypes.c_void_p(context))
