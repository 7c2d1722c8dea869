"""The OS jail of the sandbox worker: the second line of defence behind the Python policy.

The worker enters it at start, before it reads `context` or runs any model code; the host calls
`probe()` to learn whether it can be built here. This module builds the jail from its rooms and
keeps its public names; every `ctypes` call of the sandbox lives in it, `landlock` or
`seccomp_filter` (all loaded by the worker as top-level modules, so they import only the standard
library and each other). Layers (why each is here: docs/SECURITY.md):
- Landlock (`landlock`): files readable only under the interpreter's own library folders, nothing
  writable or executable; TCP bind/connect denied (ABI >= 4); signals and abstract UNIX sockets
  scoped to the jail (ABI >= 6).
- seccomp (`seccomp_filter`, through libseccomp, which knows each architecture's syscall numbers):
  no sockets, no new processes or programs, no signals to others, no ptrace, no mounts or
  namespaces, no privileged or kernel-facing calls, no file-metadata changes that Landlock does not
  cover; which arguments of the calls it keeps are refused is `syscall_arguments`' job. Refused
  calls fail with EPERM, so the code sees an OSError instead of a dead worker.
- PR_SET_NO_NEW_PRIVS, and PR_SET_PDEATHSIG so the worker dies with its parent; every capability
  dropped.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Sequence
from typing import NamedTuple

# The worker loads this module as a top-level one, beside its siblings; the host, from the package.
if __package__:
    from . import landlock, seccomp_filter, syscall_arguments
    from .jail_error import JailError
    from .landlock import landlock_abi
    from .seccomp_filter import DENIED_SYSCALLS, UNIFIED_ALLOWED, UNIFIED_SYSCALLS_FROM, UNIFIED_SYSCALLS_TO
else:  # pragma: no cover - runs in the worker, whose coverage is not measured
    import landlock  # type: ignore[import-not-found,no-redef,unused-ignore]
    import seccomp_filter  # type: ignore[import-not-found,no-redef,unused-ignore]
    import syscall_arguments  # type: ignore[import-not-found,no-redef,unused-ignore]
    from jail_error import JailError  # type: ignore[import-not-found,no-redef,unused-ignore]
    from landlock import landlock_abi  # type: ignore[import-not-found,no-redef,unused-ignore]
    from seccomp_filter import (  # type: ignore[import-not-found,no-redef,unused-ignore]
        DENIED_SYSCALLS,
        UNIFIED_ALLOWED,
        UNIFIED_SYSCALLS_FROM,
        UNIFIED_SYSCALLS_TO,
    )

__all__ = [
    "DENIED_SYSCALLS",
    "MIN_LANDLOCK_ABI",
    "SANDBOX_HOST_NAME",
    "UNIFIED_ALLOWED",
    "UNIFIED_SYSCALLS_FROM",
    "UNIFIED_SYSCALLS_TO",
    "JailError",
    "JailSupport",
    "die_with_parent",
    "enter",
    "landlock_abi",
    "probe",
    "rename_host",
    "seal_limits",
]

_PR_SET_PDEATHSIG = 1
_PR_SET_NO_NEW_PRIVS = 38

# The jail needs at least Landlock's first ABI (files) and a seccomp filter; the rest is added
# where the kernel has it.
MIN_LANDLOCK_ABI = 1


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


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


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
        seccomp_filter.load_libseccomp()
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
    seccomp_filter.load_libseccomp()
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise JailError(f"prctl(PR_SET_NO_NEW_PRIVS) failed: {os.strerror(ctypes.get_errno())}")
    abi = landlock_abi()
    if abi < MIN_LANDLOCK_ABI:
        raise JailError("the kernel has no usable Landlock")
    landlock.restrict_files_and_net(libc, abi, readable, listable)
    conditional = [
        (name, seccomp_filter.ArgCompare(*compare)) for name, *compare in syscall_arguments.refused_arguments()
    ]
    _drop_capabilities(libc)
    numbers = [n for n in range(UNIFIED_SYSCALLS_FROM, UNIFIED_SYSCALLS_TO + 1) if n not in UNIFIED_ALLOWED]
    seccomp_filter.load_filter(DENIED_SYSCALLS, conditional=conditional, numbers=numbers)
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
    seccomp_filter.load_filter(
        ("setrlimit", "seccomp"),
        conditional=[
            ("prlimit64", seccomp_filter.ArgCompare(2, rules.CMP_NE, 0, 0)),
            ("prctl", seccomp_filter.ArgCompare(0, rules.CMP_MASKED_EQ, rules.INT_MASK, rules.PR_SET_SECCOMP)),
        ],
    )
