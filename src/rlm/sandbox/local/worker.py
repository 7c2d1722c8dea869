"""The sandbox worker process: start-up, the OS jail, resource limits, and the request loop.

Started by `LocalSandbox` as `python -I -c ...` with an empty environment; it imports only the
standard library, RestrictedPython and its sibling modules (`protocol`, `jail` with `landlock`,
`seccomp_filter`, `jail_error` and `syscall_arguments`, `repl`, `policy`, `safe_values`, `output`),
never the `rlm` package (fast start, and no API keys or host objects within reach). It enters the
OS jail (`jail`) before anything else arrives, then serves the host's requests with a
`repl.Session`, speaking `protocol` frames on private copies of fds 0/1.
"""

from __future__ import annotations

import os
import resource
import signal
import sys
from typing import Any

import jail  # type: ignore[import-not-found,unused-ignore]
import protocol  # type: ignore[import-not-found,unused-ignore]
import repl  # type: ignore[import-not-found,unused-ignore]
from output import PrintCollector  # type: ignore[import-not-found,unused-ignore]

# A descriptor of /proc/self/statm, opened before the jail closes /proc.
_STATM_FD = -1
_memory_capped = False


def _cap_memory(extra_mb: int) -> None:
    global _memory_capped
    # /proc is outside the jail: the worker reads its own size through a file opened before it.
    pages = int(os.pread(_STATM_FD, 256, 0).split()[0]) if _STATM_FD >= 0 else 0
    limit = pages * os.sysconf("SC_PAGE_SIZE") + extra_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    _memory_capped = True


_MAX_PENDING_SIGNALS = 64
_MAX_DESCRIPTORS = 64


def _harden_process() -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    # No file may grow: the model's code has no `open`, and this closes the door twice.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    # Per-user kernel quotas are shared with the host's user (the same uid, root in CI): the
    # worker's share of queued signals and of descriptors (each can hold kernel objects outside
    # the address-space cap: eventfds, timerfds, watches) is kept to what it needs. It holds
    # about seven descriptors; an import opens one file at a time.
    _lower_limit(getattr(resource, "RLIMIT_SIGPENDING", None), _MAX_PENDING_SIGNALS)  # Linux only
    _lower_limit(resource.RLIMIT_NOFILE, _MAX_DESCRIPTORS)
    # No locked memory: mlock of a readable host file's mapping read it into the machine's page
    # cache and pinned it there for the worker's life (attack round 20).
    _lower_limit(resource.RLIMIT_MEMLOCK, 0)
    signal.signal(repl.STEP_SIGNAL, repl.on_step_timeout)


def _lower_limit(which: int | None, most: int) -> None:
    if which is None:
        return
    _, hard = resource.getrlimit(which)
    cap = most if hard == resource.RLIM_INFINITY else min(hard, most)
    resource.setrlimit(which, (cap, cap))


def _readable_in_jail() -> list[str]:
    """What the jailed worker may still read: the standard library (for lazy imports), its own
    folder and RestrictedPython's; never site-packages, the user's files, /proc or /etc."""
    import RestrictedPython

    stdlib = os.path.dirname(os.__file__)
    paths = [os.path.dirname(os.path.abspath(__file__)), os.path.dirname(RestrictedPython.__file__)]
    # The standard library's entries are granted one by one (its folder itself may only be
    # listed), so an installation's own site-packages, which lives there for a Python outside a
    # virtualenv, stays closed.
    paths.extend(
        os.path.join(stdlib, name) for name in os.listdir(stdlib) if name not in ("site-packages", "dist-packages")
    )
    paths.extend(p for p in sys.path if p.endswith("lib-dynload"))
    return paths


def _enter_jail(options: dict[str, Any], channel_out: Any) -> list[str]:
    """Arm the death signal and, unless told not to, enter the OS jail; the layers entered."""
    if not sys.platform.startswith("linux"):
        return []
    # Modules that load shared libraries from outside the standard library, loaded while the
    # library folders are still readable.
    import decimal  # noqa: F401
    import hashlib  # noqa: F401

    try:
        jail.die_with_parent(int(options["parent"]))
        if options.get("own_host_name"):
            jail.rename_host()
        if not options.get("jail", True):
            return []
        support = jail.enter(_readable_in_jail(), listable=[os.path.dirname(os.__file__)])
    except (jail.JailError, OSError) as exc:
        protocol.send(channel_out, {"type": "jail_failed", "error": str(exc)})
        sys.exit(3)
    return support.layers


def main(options: dict[str, Any] | None = None) -> None:
    global _STATM_FD
    options = options or {}
    # Keep private copies of the channel and point fds 0/1 at /dev/null so nothing else can
    # write into the frame stream.
    channel_in = os.fdopen(os.dup(0), "rb")
    channel_out = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    _STATM_FD = os.open("/proc/self/statm", os.O_RDONLY) if os.path.exists("/proc/self/statm") else -1
    layers = _enter_jail(options, channel_out)
    _harden_process()
    session = repl.Session(channel_in, channel_out)
    if not options.get("policy", True):
        _drop_policy_for_tests(session)
    protocol.send(channel_out, {"type": "ready", "pid": os.getpid(), "jail": layers})
    handlers = {
        "load": session.load,
        "exec": session.execute,
        "define": session.define,
        "set": session.set_variables,
    }
    try:
        sealed = False
        while True:
            try:
                request = protocol.receive(channel_in)
            except protocol.ProtocolError:
                break  # the host closed the channel
            op = request.get("op")
            if op == "close":
                break
            if op == "load" and sealed:
                reply: dict[str, Any] = {"type": "error", "error": "a worker loads one context; start a new one"}
            else:
                if op == "exec" and not sealed:
                    sealed = _seal_limits(options)
                handler = handlers.get(op)
                reply = handler(request) if handler else {"type": "error", "error": f"unknown op {op!r}"}
                if op == "load" and not sealed:
                    sealed = _seal_limits(options)
            protocol.send(channel_out, reply)
    finally:
        # Leave without the interpreter's shutdown, also when the host is gone: tearing down the
        # namespace would run finalizers of the model's objects (a generator's `finally`) untimed.
        os._exit(0)


def _seal_limits(options: dict[str, Any]) -> bool:
    """Cap memory (if no context load did), then make sure no code in this process can raise it."""
    if not _memory_capped:
        _cap_memory(int(options.get("memory_limit_mb", 1024)))
    if sys.platform.startswith("linux") and options.get("jail", True):
        jail.seal_limits()
    return True


def _drop_policy_for_tests(session: Any) -> None:
    """Test-only (`LocalSandbox(python_policy=False)`): run steps as plain Python, so tests can show
    the OS jail holds on its own, as it must when the policy has a hole. Never reachable from
    model code: only the host's start options select it."""
    import builtins

    def compile_plain(code: str) -> tuple[Any, Any]:
        return compile(code, "<step>", "exec"), None

    def print_to_step(*objects: Any, **kwargs: Any) -> None:
        kwargs.pop("file", None)
        print(*objects, file=PrintCollector.buffer, **kwargs)

    repl.compile_step = compile_plain
    session.namespace["__builtins__"] = {**vars(builtins), "print": print_to_step}


if __name__ == "__main__":
    main()
