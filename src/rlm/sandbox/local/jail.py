"""The OS jail of the sandbox worker: the second line of defence behind the Python policy.

The worker enters it at start, before it reads `context` or runs any model code; the host calls
`probe()` to learn whether it can be built here. Every `ctypes` call of the sandbox lives in this
module (it is loaded by the worker as a top-level module, so it imports only the standard library).
Layers (why each is here: docs/SECURITY.md):
- Landlock: files readable only under the interpreter's own library folders, nothing writable or
  executable; TCP bind/connect denied (ABI >= 4); signals and abstract UNIX sockets scoped to the
  jail (ABI >= 6).
- seccomp (through libseccomp, which knows each architecture's syscall numbers): no sockets, no new
  processes or programs, no signals to others, no ptrace, no mounts or namespaces, no privileged or
  kernel-facing calls, no file-metadata changes that Landlock does not cover; which arguments of
  the calls it keeps are refused is `syscall_arguments`' job. Refused calls fail with EPERM, so
  the code sees an OSError instead of a dead worker.
- PR_SET_NO_NEW_PRIVS, and PR_SET_PDEATHSIG so the worker dies with its parent.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import sys
from collections.abc import Sequence
from typing import NamedTuple

# The worker loads this module as a top-level one, beside its siblings; the host, from the package.
if __package__:
    from . import syscall_arguments
else:  # pragma: no cover - runs in the worker, whose coverage is not measured
    import syscall_arguments  # type: ignore[import-not-found,no-redef,unused-ignore]

# Landlock's syscall numbers are the same on every architecture Linux supports it on.
_SYS_LANDLOCK_CREATE_RULESET = 444
_SYS_LANDLOCK_ADD_RULE = 445
_SYS_LANDLOCK_RESTRICT_SELF = 446
_LANDLOCK_CREATE_RULESET_VERSION = 1
_LANDLOCK_RULE_PATH_BENEATH = 1

_FS_EXECUTE = 1 << 0
_FS_WRITE_FILE = 1 << 1
_FS_READ_FILE = 1 << 2
_FS_READ_DIR = 1 << 3
_FS_REFER = 1 << 13  # ABI 2
_FS_TRUNCATE = 1 << 14  # ABI 3
_FS_IOCTL_DEV = 1 << 15  # ABI 5
_NET_BIND_TCP = 1 << 0  # ABI 4
_NET_CONNECT_TCP = 1 << 1
_SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
_SCOPE_SIGNAL = 1 << 1

_PR_SET_PDEATHSIG = 1
_PR_SET_NO_NEW_PRIVS = 38

# The jail needs at least Landlock's first ABI (files) and a seccomp filter; the rest is added
# where the kernel has it.
MIN_LANDLOCK_ABI = 1

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
    # capabilities, and which pids exist (the worker's own are all dropped, see _drop_capabilities)
    "capget",
    # sysinfo is not namespaced: it told the machine's process count and load; statfs told the
    # filesystem's id (derived from the disk's UUID on ext4), free space and inode counts
    "sysinfo", "statfs", "fstatfs", "statfs64", "fstatfs64", "ustat",
    # the machine's whole disk cache: sync/syncfs flush it (a loop slows every process's I/O), and
    # fadvise/readahead push readable files out of the shared page cache or pull them in
    "sync", "syncfs", "fadvise64", "fadvise64_64", "arm_fadvise64_64", "readahead",
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


class _ArgCompare(ctypes.Structure):
    """libseccomp's `struct scmp_arg_cmp`."""

    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


def _scmp_act_errno(code: int) -> int:
    return 0x00050000 | (code & 0xFFFF)


class JailError(Exception):
    """The jail could not be built; the message names the missing piece."""


class JailSupport(NamedTuple):  # not a dataclass: importing dataclasses slows every worker start
    """What this machine offers the jail (`probe`), or what the worker actually entered."""

    landlock_abi: int
    seccomp: bool
    problem: str | None = None  # why the jail cannot be built here, or None

    @property
    def available(self) -> bool:
        return self.problem is None

    @property
    def layers(self) -> list[str]:
        found = []
        if self.landlock_abi >= 1:
            found.append("landlock-files")
        if self.landlock_abi >= 4:
            found.append("landlock-tcp")
        if self.landlock_abi >= 6:
            found.append("landlock-scopes")
        if self.seccomp:
            found.append("seccomp")
        return found


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1  # the kernel's struct is packed: 12 bytes
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _syscall(libc: ctypes.CDLL, number: int, *args: object) -> int:
    ctypes.set_errno(0)
    result = int(libc.syscall(ctypes.c_long(number), *args))
    if result < 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return result


def landlock_abi() -> int:
    """Landlock's ABI version here, or 0 when the kernel lacks it or has it disabled."""
    if not sys.platform.startswith("linux"):
        return 0
    try:
        return _syscall(
            _libc(), _SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0), _LANDLOCK_CREATE_RULESET_VERSION
        )
    except OSError:
        return 0


_libseccomp: ctypes.CDLL | None = None


def _load_libseccomp() -> ctypes.CDLL:
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
        ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint, ctypes.POINTER(_ArgCompare)
    ]  # fmt: skip
    lib.seccomp_load.restype = ctypes.c_int
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    return lib


def probe() -> JailSupport:
    """Whether the jail can be built on this machine, without entering it (the host calls this)."""
    if not sys.platform.startswith("linux"):
        return JailSupport(0, False, f"the OS jail uses Linux's Landlock and seccomp; this is {sys.platform}")
    abi = landlock_abi()
    if abi < MIN_LANDLOCK_ABI:
        return JailSupport(
            abi,
            False,
            "the kernel has no usable Landlock (Linux 5.13 or newer with 'landlock' in its LSM list is needed)",
        )
    try:
        _load_libseccomp()
    except JailError as exc:
        return JailSupport(abi, False, str(exc))
    return JailSupport(abi, True)


def die_with_parent(expected_parent: int) -> None:
    """Ask the kernel to kill this process when its parent ends; exit now if it already has."""
    libc = _libc()
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise JailError(f"prctl(PR_SET_PDEATHSIG) failed: {os.strerror(ctypes.get_errno())}")
    if os.getppid() != expected_parent:
        os._exit(0)  # the parent died before the death signal was armed


# What the worker's host is called in its own UTS namespace: uname() told the machine's name.
SANDBOX_HOST_NAME = b"sandbox"


def rename_host() -> None:
    """Give the host a neutral name; only in a UTS namespace of this process's own (see sandbox.py)."""
    if _libc().sethostname(SANDBOX_HOST_NAME, len(SANDBOX_HOST_NAME)) != 0:
        raise JailError(f"sethostname in the worker's own UTS namespace failed: {os.strerror(ctypes.get_errno())}")


def enter(readable: list[str], listable: Sequence[str] = ()) -> JailSupport:
    """Jail this process for good: Landlock over files/net/scopes, then the seccomp filter.

    `readable` are files or folders this process may still read (never write or execute);
    `listable` folders may be listed, but their files are readable only where `readable` says.
    """
    libc = _libc()
    _load_libseccomp()
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise JailError(f"prctl(PR_SET_NO_NEW_PRIVS) failed: {os.strerror(ctypes.get_errno())}")
    abi = landlock_abi()
    if abi < MIN_LANDLOCK_ABI:
        raise JailError("the kernel has no usable Landlock")
    _restrict_files_and_net(libc, abi, readable, listable)
    conditional = [(name, _ArgCompare(*compare)) for name, *compare in syscall_arguments.refused_arguments()]
    _drop_capabilities(libc)
    numbers = [n for n in range(UNIFIED_SYSCALLS_FROM, UNIFIED_SYSCALLS_TO + 1) if n not in UNIFIED_ALLOWED]
    _load_seccomp(DENIED_SYSCALLS, conditional=conditional, numbers=numbers)
    return JailSupport(abi, True)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _drop_capabilities(libc: ctypes.CDLL) -> None:
    """Give up every capability: the worker needs none.

    Inside its user namespace the worker is root, and that root may map to the host's: with
    CAP_SETFCAP or CAP_FOWNER it could change root-owned host files' attributes through any call
    the filter misses. Ambient and bounding sets go first (dropping the bounding set needs
    CAP_SETPCAP, which the last step removes).
    """
    pr_capbset_drop, pr_cap_ambient, pr_cap_ambient_clear_all = 24, 47, 4
    libc.prctl(pr_cap_ambient, pr_cap_ambient_clear_all, 0, 0, 0)
    for capability in range(64):
        libc.prctl(pr_capbset_drop, capability, 0, 0, 0)  # EINVAL past the kernel's last: fine
    header = _CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
    data = (_CapData * 2)()
    if libc.capset(ctypes.byref(header), data) != 0:
        raise JailError(f"capset (dropping all capabilities) failed: {os.strerror(ctypes.get_errno())}")


def seal_limits() -> None:
    """From now on no resource limit can be set (the worker has set its memory cap); reading works."""
    rules = syscall_arguments
    # The worker's last filter also closes filters: each one it stacked is kernel memory outside
    # its cap (attack round 15 stacked 3,602, ~22 MB, held as long as the worker lived, and every
    # later syscall ran through all of them). No filter is needed after this one.
    _load_seccomp(
        ("setrlimit", "seccomp"),
        conditional=[
            ("prlimit64", _ArgCompare(2, rules.CMP_NE, 0, 0)),
            ("prctl", _ArgCompare(0, rules.CMP_MASKED_EQ, rules.INT_MASK, rules.PR_SET_SECCOMP)),
        ],
    )


def _handled_fs(abi: int) -> int:
    handled = (1 << 13) - 1  # ABI 1: EXECUTE .. MAKE_SYM
    if abi >= 2:
        handled |= _FS_REFER
    if abi >= 3:
        handled |= _FS_TRUNCATE
    if abi >= 5:
        handled |= _FS_IOCTL_DEV
    return handled


def _restrict_files_and_net(libc: ctypes.CDLL, abi: int, readable: list[str], listable: Sequence[str]) -> None:
    attr = _RulesetAttr(
        handled_access_fs=_handled_fs(abi),
        handled_access_net=(_NET_BIND_TCP | _NET_CONNECT_TCP) if abi >= 4 else 0,
        scoped=(_SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL) if abi >= 6 else 0,
    )
    # Older kernels read only the fields they know; the size must not promise more than that.
    size = 8 if abi < 4 else 16 if abi < 6 else 24
    try:
        ruleset = _syscall(libc, _SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), 0)
    except OSError as exc:
        raise JailError(f"landlock_create_ruleset failed: {exc}") from exc
    try:
        for path in readable:
            _allow(libc, ruleset, path, _FS_READ_FILE | _FS_READ_DIR if os.path.isdir(path) else _FS_READ_FILE)
        for path in listable:
            _allow(libc, ruleset, path, _FS_READ_DIR)
        try:
            _syscall(libc, _SYS_LANDLOCK_RESTRICT_SELF, ruleset, 0)
        except OSError as exc:
            raise JailError(f"landlock_restrict_self failed: {exc}") from exc
    finally:
        os.close(ruleset)


def _allow(libc: ctypes.CDLL, ruleset: int, path: str, access: int) -> None:
    if os.path.islink(path):
        return  # an entry of the standard library may point elsewhere (Debian's sitecustomize.py: /etc)
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except FileNotFoundError:
        return  # an optional folder this installation does not have
    try:
        rule = _PathBeneathAttr(allowed_access=access, parent_fd=fd)
        try:
            _syscall(libc, _SYS_LANDLOCK_ADD_RULE, ruleset, _LANDLOCK_RULE_PATH_BENEATH, ctypes.byref(rule), 0)
        except OSError as exc:
            raise JailError(f"landlock_add_rule({path!r}) failed: {exc}") from exc
    finally:
        os.close(fd)


def _load_seccomp(
    names: tuple[str, ...],
    conditional: list[tuple[str, _ArgCompare]] | None = None,
    numbers: Sequence[int] = (),
) -> None:
    """Deny `names` (skipped where unknown on this architecture), `numbers` (by number, known or
    not), and each conditional (name, argument compare)."""
    lib = _load_libseccomp()
    context = lib.seccomp_init(_SCMP_ACT_ALLOW)
    if not context:
        raise JailError("seccomp_init failed")
    try:
        deny = _scmp_act_errno(errno.EPERM)
        rules: list[tuple[str, list[_ArgCompare]]] = [(name, []) for name in names] + [
            (name, [when]) for name, when in conditional or []
        ]
        for name, conditions in rules:
            number = lib.seccomp_syscall_resolve_name(name.encode())
            if number < 0:
                continue  # not a syscall on this architecture
            array = (_ArgCompare * max(1, len(conditions)))(*conditions)
            if lib.seccomp_rule_add_array(context, deny, number, len(conditions), array) != 0:
                raise JailError(f"seccomp could not deny {name}")
        for number in numbers:
            if lib.seccomp_rule_add_array(context, deny, number, 0, (_ArgCompare * 1)()) != 0:
                raise JailError(f"seccomp could not deny syscall {number}")
        result = lib.seccomp_load(ctypes.c_void_p(context))
        if result != 0:
            raise JailError(f"seccomp_load failed: {os.strerror(-result)}")
    finally:
        lib.seccomp_release(ctypes.c_void_p(context))
