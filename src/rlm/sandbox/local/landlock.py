"""Landlock for the sandbox worker's OS jail: files, TCP and scopes, through raw syscalls.

`jail` enters it (`restrict_files_and_net`) and asks which ABI the kernel offers (`landlock_abi`):
files readable only under the interpreter's own library folders, nothing writable or executable;
TCP bind/connect denied (ABI >= 4); signals and abstract UNIX sockets scoped to the jail (ABI >= 6).
Why: docs/SECURITY.md. Loaded by the worker as a top-level module, beside its siblings, so it
imports only the standard library (and them).
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Sequence

# The worker loads this module as a top-level one, beside its siblings; the host, from the package.
if __package__:
    from .jail_error import JailError
else:  # pragma: no cover - runs in the worker, whose coverage is not measured
    from jail_error import JailError  # type: ignore[import-not-found,no-redef,unused-ignore]

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


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1  # the kernel's struct is packed: 12 bytes
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


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
            ctypes.CDLL(None, use_errno=True),
            _SYS_LANDLOCK_CREATE_RULESET,
            None,
            ctypes.c_size_t(0),
            _LANDLOCK_CREATE_RULESET_VERSION,
        )
    except OSError:
        return 0


def _handled_fs(abi: int) -> int:
    handled = (1 << 13) - 1  # ABI 1: EXECUTE .. MAKE_SYM
    if abi >= 2:
        handled |= _FS_REFER
    if abi >= 3:
        handled |= _FS_TRUNCATE
    if abi >= 5:
        handled |= _FS_IOCTL_DEV
    return handled


def restrict_files_and_net(libc: ctypes.CDLL, abi: int, readable: list[str], listable: Sequence[str]) -> None:
    """Restrict this process for good to reading `readable` and listing `listable` (see `jail.enter`)."""
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
