"""Host side of the local sandbox: starts the worker process, loads `context`, runs steps.

The engine calls `execute(code, handler)`; sub-LM calls made by the model's code arrive here as
frames and are answered by `handler` on the host, so the worker never holds a key or a client.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from rlm.errors import SandboxError
from rlm.sandbox.base import ExecutionResult, SandboxLimits, SubcallHandler, clip_middle
from rlm.sandbox.local import protocol

logger = logging.getLogger(__name__)

_WORKER_DIR = Path(__file__).resolve().parent
_BOOTSTRAP = f"import sys; sys.path.insert(0, {str(_WORKER_DIR)!r}); import worker; worker.main()"
# Seconds a step may overrun its limit before the worker is killed (it gets a TimeoutError first).
HARD_KILL_GRACE_S = 1.0
START_TIMEOUT_S = 15.0

_isolation_lock = threading.Lock()
_isolation_checked: bool | None = None


def network_isolation_available() -> bool:
    """Whether `unshare -n -r` can give the worker an empty network namespace here (checked once)."""
    global _isolation_checked
    with _isolation_lock:
        if _isolation_checked is None:
            unshare = shutil.which("unshare")
            ok = False
            if unshare and sys.platform.startswith("linux"):
                try:
                    ok = subprocess.run([unshare, "-n", "-r", "true"], capture_output=True, timeout=5).returncode == 0
                except (OSError, subprocess.SubprocessError):
                    ok = False
            if not ok:
                logger.warning(
                    "recursive-llm: no network namespace available (unshare -n -r failed); the local sandbox "
                    "relies on its Python policy and process limits alone to keep code off the network."
                )
            _isolation_checked = ok
        return _isolation_checked


class LocalSandbox:
    """A persistent RestrictedPython REPL in a separate, limited worker process."""

    name = "restricted"

    def __init__(self, limits: SandboxLimits | None = None, isolate_network: bool = True) -> None:
        self.limits = limits or SandboxLimits()
        self.isolate_network = isolate_network
        self._process: subprocess.Popen[bytes] | None = None
        self._context: Any = None
        self._loaded = False

    # --- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> None:
        if self._process is not None:
            return
        command = [sys.executable, "-I", "-c", _BOOTSTRAP]
        if self.isolate_network and network_isolation_available():
            command = ["unshare", "-n", "-r", *command]
        try:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env={},
                cwd="/",
                bufsize=0,
                close_fds=True,
                start_new_session=True,
            )
        except OSError as exc:
            raise SandboxError(f"could not start the sandbox worker: {exc}") from exc
        ready = self._receive(deadline=time.monotonic() + START_TIMEOUT_S)
        if ready is None or ready.get("type") != "ready":
            self._kill()
            raise SandboxError("the sandbox worker did not start; is RestrictedPython installed?")

    def load(self, context: Any) -> None:
        self._context = context
        self._send_context()
        self._loaded = True

    def close(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        try:
            assert process.stdin is not None
            protocol.send(process.stdin, {"op": "close"})
            process.wait(timeout=1.0)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            pass
        finally:
            _kill_group(process)

    def __enter__(self) -> LocalSandbox:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- steps ---------------------------------------------------------------------------------------
    def execute(self, code: str, handler: SubcallHandler) -> ExecutionResult:
        if self._process is None:
            self.start()
        timeout = self.limits.exec_timeout
        self._send({"op": "exec", "code": code, "timeout": timeout})
        deadline = time.monotonic() + timeout + HARD_KILL_GRACE_S
        while True:
            message = self._receive(deadline)
            if message is None:
                return self._recover(
                    f"TimeoutError: the step ran longer than {timeout:g} s and was stopped; the REPL was "
                    "restarted, so only `context` is still defined. Work on smaller pieces."
                )
            if message.get("type") == "crashed":
                return self._recover(
                    "SandboxCrash: the step ended the sandbox process (most likely it exceeded the memory "
                    f"limit of {self.limits.memory_limit_mb} MB); the REPL was restarted, so only `context` "
                    "is still defined."
                )
            if message.get("type") == "call":
                started = time.monotonic()
                self._send(_answer_call(handler, message))
                deadline += time.monotonic() - started  # host time does not count against the step
                continue
            return ExecutionResult(
                output=clip_middle(message.get("output") or "", self.limits.max_output_chars),
                error=message.get("error"),
                final_answer=message.get("final"),
                submitted=message.get("submitted"),
            )

    def define_tools(self, names: list[str], submit_fields: list[str] | None = None) -> None:
        """Offer host functions `names` to the code (called back through `execute`'s handler)."""
        self._request({"op": "define", "tools": list(names), "submit_fields": submit_fields}, "defined")

    def set_variables(self, variables: dict[str, Any]) -> None:
        """Bind JSON-like values as top-level names of the REPL."""
        payload = json.dumps(variables, ensure_ascii=False, default=str).encode("utf-8")
        self._request({"op": "set"}, "set", payload)

    def _request(self, message: dict[str, Any], expected: str, payload: bytes | None = None) -> None:
        if self._process is None:
            self.start()
        self._send(message)
        if payload is not None:
            process = self._require_process()
            assert process.stdin is not None
            protocol.write_frame(process.stdin, payload)
        reply = self._receive(time.monotonic() + START_TIMEOUT_S)
        if reply is None or reply.get("type") != expected:
            detail = (reply or {}).get("error", "no answer")
            raise SandboxError(f"the sandbox worker refused {message['op']!r}: {detail}")

    # --- internals -----------------------------------------------------------------------------------
    def _send_context(self) -> None:
        context = self._context
        kind, text = (
            ("text", context) if isinstance(context, str) else ("json", json.dumps(context, ensure_ascii=False))
        )
        self._send(
            {
                "op": "load",
                "kind": kind,
                "memory_limit_mb": self.limits.memory_limit_mb,
                "max_output_chars": self.limits.max_output_chars,
            }
        )
        process = self._require_process()
        assert process.stdin is not None
        try:
            protocol.write_text_frame(process.stdin, text)
        except (OSError, UnicodeEncodeError) as exc:
            raise SandboxError(f"the sandbox worker refused the context: {exc}") from exc
        # Decoding in the worker runs at well over 50 MB/s; allow that plus the start-up margin.
        deadline = time.monotonic() + START_TIMEOUT_S + len(text) / 50e6
        del text
        reply = self._receive(deadline)
        if reply is None or reply.get("type") != "loaded":
            raise SandboxError("the sandbox worker could not load the context (too large for its memory limit?)")

    def _recover(self, error: str) -> ExecutionResult:
        self._kill()
        self.start()
        if self._loaded:
            self._send_context()
        return ExecutionResult(output="", error=error, restarted=True)

    def _send(self, message: dict[str, Any]) -> None:
        process = self._require_process()
        assert process.stdin is not None
        try:
            protocol.send(process.stdin, message)
        except (OSError, ValueError) as exc:
            raise SandboxError(f"lost the sandbox worker: {exc}") from exc

    def _receive(self, deadline: float) -> dict[str, Any] | None:
        """The next frame, None on timeout, or {"type": "crashed"} if the worker died."""
        process = self._require_process()
        assert process.stdout is not None
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        ready, _, _ = select.select([process.stdout], [], [], remaining)
        if not ready:
            return None
        try:
            return protocol.receive(process.stdout)
        except (protocol.ProtocolError, ValueError, OSError):
            return {"type": "crashed"}

    def _require_process(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise SandboxError("the sandbox is not started")
        return self._process

    def _kill(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            _kill_group(process)


def _answer_call(handler: SubcallHandler, message: dict[str, Any]) -> dict[str, Any]:
    try:
        value = handler(str(message.get("fn")), list(message.get("args") or []), dict(message.get("kwargs") or {}))
        json.dumps(value)
        return {"value": value}
    except Exception as exc:  # reported to the model's code as SubcallError, never lost
        return {"error": f"{type(exc).__name__}: {exc}"}


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
    for stream in (process.stdin, process.stdout):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()
