"""The E2B sandbox: each RLM node gets one persistent E2B cloud sandbox (extra `[e2b]`).

Built from `registry.py`. Uses the `e2b-code-interpreter` SDK's `Sandbox.create`, `files.write`,
`run_code(on_stdout=..., on_stderr=..., on_result=..., on_error=...)`, `set_timeout` and `kill`.
The context is uploaded once as a compressed file; sub-calls travel as stdout markers answered
with reply files (`bridge.py`). No API key or LM client ever enters the sandbox.
"""

from __future__ import annotations

import io
import json
import os
import posixpath
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from rlm.errors import SandboxError
from rlm.sandbox.base import ExecutionResult, SandboxLimits, SubcallHandler, clip_middle
from rlm.sandbox.e2b import service
from rlm.sandbox.e2b.bridge import FINAL_SIGNAL, MAX_STEP_OUTPUT_BYTES, OutputReader, prelude
from rlm.sandbox.host_memory import BASE_FRAME_BYTES
from rlm.utf8 import utf8_text

DEFAULT_WORKDIR = "/home/user/.rlm"
# Short, so the sandboxes of a crashed host stop soon; extended before each step and while the
# host works (`service.LIVE`). E2B allows up to 1 h (Hobby) or 24 h (Pro).
SANDBOX_LIFETIME_S = 300
# The step deadline is enforced on the host (E2B's run_code timeout fires at about twice the
# value passed, and would count the host's time on sub-calls); this only ends a lost request.
RUN_CODE_BACKSTOP_S = 3600.0
SETUP_S = 60.0
# Upload deadline: a base plus the size at a slow-but-working rate (raw bytes; gzip shrinks text
# several times on the wire).
UPLOAD_BASE_S = 30.0
UPLOAD_MIN_BYTES_PER_S = 1_000_000
REPLY_WRITE_S = 60.0

T = TypeVar("T")


def check_available() -> None:
    """Raise SandboxError naming what is missing for `sandbox="e2b"`."""
    service.load_sdk()
    if not os.environ.get("E2B_API_KEY"):
        raise SandboxError("The e2b sandbox needs an E2B API key: set E2B_API_KEY (or use sandbox='restricted')")


class _Lost(Exception):
    """The sandbox stopped answering; the step ends and a new sandbox takes its place."""


class _Upload(io.BytesIO):
    """The context's bytes for a streamed upload; `cancel` ends an upload the host gave up on."""

    cancelled = False

    def read(self, size: int | None = -1) -> bytes:
        if self.cancelled:
            raise OSError("upload cancelled: the host's deadline passed")
        return super().read(size)


class E2BSandbox:
    """One E2B sandbox per RLM node, with the REPL functions bridged back to the host."""

    name = "e2b"

    def __init__(
        self,
        limits: SandboxLimits | None = None,
        *,
        api_key: str | None = None,
        template: str | None = None,
        workdir: str = DEFAULT_WORKDIR,
        lifetime: int = SANDBOX_LIFETIME_S,
        sdk: Any = None,
    ) -> None:
        self.limits = limits or SandboxLimits()
        self.api_key = api_key or os.environ.get("E2B_API_KEY")
        self.template = template
        self.workdir = workdir
        self.lifetime = lifetime
        self._sdk = sdk
        self._box: Any = None
        self._context: Any = None
        self._loaded = False
        # A call marker's line is bounded as the local worker's frames are: 64 MiB plus twice the
        # context (set when the context is uploaded).
        self._max_marker_chars = BASE_FRAME_BYTES
        self._step_events: queue.Queue[tuple[str, Any]] | None = None  # the step under way's, for `interrupt`
        service.warn_memory_limit_once(self.limits.memory_limit_mb, SandboxLimits().memory_limit_mb)

    # --- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> None:
        if self._box is not None:
            return
        sdk = self._sdk or service.load_sdk()
        if not self.api_key:
            raise SandboxError("The e2b sandbox needs an E2B API key: set E2B_API_KEY or pass api_key=...")
        options = {"template": self.template, "timeout": self.lifetime, "api_key": self.api_key}
        self._box = service.create_sandbox(sdk, **options)
        service.LIVE.add(self._box, self.lifetime)
        try:
            self._setup(prelude(self.workdir), SETUP_S, "setting up the E2B sandbox")
        except BaseException:
            self.close()
            raise

    def load(self, context: Any) -> None:
        if self._box is None:
            self.start()
        self._context = context
        self._upload_context()
        self._loaded = True

    def interrupt(self) -> None:
        """End a step under way now, from any thread: a cancelled run (an `item_timeout`) otherwise
        waited for the step's own limit, with the E2B sandbox billed meanwhile."""
        events = self._step_events
        if events is not None:
            events.put(("interrupted", None))

    def close(self) -> None:
        box, self._box = self._box, None
        if box is not None:
            service.LIVE.remove(box)
            service.kill_quietly(box, self.lifetime)

    # --- steps ---------------------------------------------------------------------------------------
    def execute(self, code: str, handler: SubcallHandler) -> ExecutionResult:
        if self._box is None:
            self.start()
        try:
            service.LIVE.extend(self._box)
        except service.sdk_errors().NotFoundException as exc:
            return self._restarted(
                "", f"SandboxLost: the E2B sandbox had stopped ({exc}) and was replaced before this step ran"
            )
        except Exception as exc:  # a passing network fault: the keeper thread tries again
            service.logger.info("could not extend the E2B sandbox: %s: %s", type(exc).__name__, exc)

        events: queue.Queue[tuple[str, Any]] = queue.Queue()
        reader = OutputReader(
            lambda call, held: events.put(("call", (call, held))),
            output_limit=self.limits.max_output_chars,
            max_line_chars=self._max_marker_chars,
            budget=self.limits.frame_budget,
            on_too_much=lambda: events.put(("too_much", None)),
        )
        self._step_events = events
        try:
            return self._run_step(code, handler, reader, events)
        finally:
            self._step_events = None
            # Calls still queued (a step cut at its deadline) no longer count against the run's
            # account; the reader counts no new ones.
            reader.close()
            while not events.empty():
                kind, value = events.get_nowait()
                if kind == "call":
                    reader.answered(value[1])

    def _run_step(
        self, code: str, handler: SubcallHandler, reader: OutputReader, events: queue.Queue[tuple[str, Any]]
    ) -> ExecutionResult:
        box = self._box

        def run() -> None:
            try:
                execution = box.run_code(
                    code,
                    on_stdout=reader.on_stdout,
                    on_stderr=reader.on_stderr,
                    on_result=reader.on_result,
                    on_error=reader.on_error,
                    timeout=RUN_CODE_BACKSTOP_S,
                )
                events.put(("done", execution))
            except BaseException as exc:
                events.put(("failed", exc))

        threading.Thread(target=run, name="rlm-e2b-step", daemon=True).start()
        # The step's budget is the code's own time: the clock stops while the host answers a
        # sub-call, so a slow child RLM does not use up its parent's step.
        left = self.limits.exec_timeout
        while True:
            waited_from = time.monotonic()
            try:
                if left <= 0:  # markers still queued must not keep a spent step going
                    raise queue.Empty
                kind, value = events.get(timeout=left)
            except queue.Empty:
                return self._restarted(
                    reader.text(),
                    f"TimeoutError: the step ran longer than {self.limits.exec_timeout:g} s (time spent answering "
                    "llm_query and the other host functions not counted) and was stopped",
                )
            left -= time.monotonic() - waited_from
            if kind == "call":
                answering_from = time.monotonic()
                call, held = value
                try:
                    host_work = self._answer(box, call, handler)
                except _Lost as exc:
                    return self._restarted(reader.text(), f"SandboxLost: {exc}")
                finally:
                    reader.answered(held)
                # Only the host's own work on a call it carried out is off the step's clock. Writing
                # the reply, and a refused call (past the budget or the step's deadline), are the
                # step's: markers printed in a loop otherwise held the step past every limit.
                left -= (time.monotonic() - answering_from) - host_work
            elif kind == "done":
                return self._result(value, reader)
            elif kind == "interrupted":
                self.close()  # no new sandbox: the node is ending
                return ExecutionResult(
                    output=clip_middle(reader.text(), self.limits.max_output_chars),
                    error="Cancelled: the run was cancelled while this step ran; the sandbox was closed.",
                    restarted=True,
                )
            elif kind == "too_much":
                return self._restarted(
                    reader.text(),
                    f"OutputLimit: the step printed more than the host keeps for a step ({MAX_STEP_OUTPUT_BYTES >> 20} "
                    "MB, or the run's share left) and was stopped; print summaries, not whole data",
                )
            elif isinstance(value, service.sdk_errors().TimeoutException):
                # Includes SandboxNotRunningException and SandboxUnreachableException: the sandbox
                # reached its lifetime, was killed, or cannot be reached.
                return self._restarted(reader.text(), f"SandboxLost: the E2B sandbox stopped ({value})")
            else:
                raise SandboxError(f"the E2B sandbox failed: {type(value).__name__}: {value}") from value

    # --- internals -----------------------------------------------------------------------------------
    def _result(self, execution: Any, reader: OutputReader) -> ExecutionResult:
        reader.finish()
        output = reader.text()
        if reader.final is None and execution.text is not None:
            output += f"{execution.text}\n"
        error = None
        failure = execution.error
        if reader.final is None and failure is not None and failure.name != FINAL_SIGNAL:
            error = utf8_text(f"{failure.name}: {failure.value}")
        return ExecutionResult(
            # The SDK's JSON gives the result's text and the error's value as the code made them:
            # a lone surrogate there ended run() when the next LM request was encoded.
            output=clip_middle(utf8_text(output), self.limits.max_output_chars),
            error=error,
            final_answer=reader.final,
        )

    def _restarted(self, output: str, reason: str) -> ExecutionResult:
        self._restart()
        reason = utf8_text(reason)  # may quote the SDK's error text
        return ExecutionResult(
            output=clip_middle(output, self.limits.max_output_chars),
            error=f"{reason}. The sandbox was restarted: only `context` is defined again; your variables are gone.",
            restarted=True,
        )

    def _answer(self, box: Any, call: dict[str, Any], handler: SubcallHandler) -> float:
        """Answer one call marker; the seconds the host worked on it (0 when the call was refused)."""
        started = time.monotonic()
        try:
            reply = json.dumps({"value": handler(call["fn"], list(call["args"]), {})}, ensure_ascii=False)
            host_work = time.monotonic() - started
        except Exception as exc:  # reported to the model's code as SubcallError, never lost
            reply = json.dumps({"error": f"{type(exc).__name__}: {exc}"}, ensure_ascii=False)
            host_work = 0.0
        path = posixpath.join(self.workdir, f"reply-{call['id']}.json")
        try:
            box.files.write(path, reply.encode("utf-8"), request_timeout=REPLY_WRITE_S)
        except Exception as exc:
            raise _Lost(f"the answer to {call['fn']} could not be written ({type(exc).__name__}: {exc})") from exc
        return host_work

    def _upload_context(self) -> None:
        context = self._context
        if isinstance(context, str):
            name, data, reader = "context.txt", context.encode("utf-8"), "context_file.read()"
        else:
            data = json.dumps(context, ensure_ascii=False).encode("utf-8")
            name, reader = "context.json", "_rlm_json.load(context_file)"
        self._max_marker_chars = BASE_FRAME_BYTES + 2 * len(data)
        path = posixpath.join(self.workdir, name)
        seconds = UPLOAD_BASE_S + len(data) / UPLOAD_MIN_BYTES_PER_S
        # A streamed, gzip-compressed upload: a `str` would be one in-memory request under the
        # SDK's 60 s request timeout. Streamed uploads have no client deadline, so the host keeps one.
        upload = _Upload(data)
        try:
            self._within(
                seconds,
                f"uploading the context ({len(data) / 1e6:.1f} MB) to E2B",
                lambda box: box.files.write(path, upload, gzip=True),
            )
        finally:
            upload.cancelled = True
        load = f"with open({path!r}, encoding='utf-8') as context_file:\n    context = {reader}\ndel context_file"
        self._setup(load, SETUP_S + len(data) / 20e6, "loading the context in the E2B sandbox")

    def _setup(self, code: str, seconds: float, what: str) -> None:
        execution = self._within(seconds, what, lambda box: box.run_code(code, timeout=seconds))
        if execution.error is not None:
            raise SandboxError(f"{what} failed: {execution.error.name}: {execution.error.value}")

    def _within(self, seconds: float, what: str, work: Callable[[Any], T]) -> T:
        """`work(box)` under a deadline the host keeps; past it the sandbox is killed."""
        box = self._box
        done: queue.Queue[tuple[bool, Any]] = queue.Queue()

        def run() -> None:
            try:
                done.put((True, work(box)))
            except BaseException as exc:
                done.put((False, exc))

        threading.Thread(target=run, name="rlm-e2b-setup", daemon=True).start()
        try:
            ok, value = done.get(timeout=seconds)
        except queue.Empty:
            self.close()
            raise SandboxError(
                f"{what} took longer than {seconds:.0f} s, so the sandbox was killed: check the connection to E2B"
            ) from None
        if not ok:
            raise SandboxError(f"{what} failed: {type(value).__name__}: {value}") from value
        return value

    def _restart(self) -> None:
        box = self._box
        self._box = None
        if box is not None:  # a kill that hangs must not hold the step: it runs on its own thread
            service.LIVE.remove(box)
            threading.Thread(target=service.kill_quietly, args=(box, self.lifetime), daemon=True).start()
        self.start()
        if self._loaded:
            self._upload_context()
