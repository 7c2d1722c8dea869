"""The E2B sandbox: each RLM node gets one persistent E2B cloud sandbox (extra `[e2b]`).

Built on the `e2b-code-interpreter` SDK's documented surface: `Sandbox.create`, `files.write`,
`run_code(on_stdout=..., timeout=...)` and `kill`. The context is uploaded once as a file. A
sub-call made by code in the sandbox is a marker line on stdout, which the SDK streams to the host
while the code runs; the host answers by writing a reply file that the waiting code reads. No API
key or LM client ever enters the sandbox.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
from collections.abc import Callable
from typing import Any

from rlm.errors import SandboxError
from rlm.sandbox.base import ExecutionResult, SandboxLimits, SubcallHandler, clip_middle

CALL_MARK = "\x1eRLM_CALL "
FINAL_MARK = "\x1eRLM_FINAL "
FINAL_SIGNAL = "_RLMFinal"
DEFAULT_WORKDIR = "/home/user/.rlm"
# E2B's step timeout is wall-clock and includes time spent waiting for sub-calls on the host.
SUBCALL_ALLOWANCE_S = 300.0
SANDBOX_LIFETIME_S = 3600

_PRELUDE = r'''
import json as _rlm_json, os as _rlm_os, time as _rlm_time, uuid as _rlm_uuid
_RLM_DIR = {workdir!r}

class SubcallError(Exception):
    """A host function (llm_query, recursive_llm, ...) failed; the message says why."""

class _RLMFinal(BaseException):
    pass

def _rlm_call(fn, args):
    call_id = _rlm_uuid.uuid4().hex
    path = _rlm_os.path.join(_RLM_DIR, "reply-" + call_id + ".json")
    print({call_mark!r} + _rlm_json.dumps({{"id": call_id, "fn": fn, "args": args}}), flush=True)
    while True:
        if _rlm_os.path.exists(path):
            try:
                with open(path) as reply_file:
                    reply = _rlm_json.load(reply_file)
                break
            except ValueError:
                pass  # the host is still writing it
        _rlm_time.sleep(0.005)
    _rlm_os.remove(path)
    if "error" in reply:
        raise SubcallError(reply["error"])
    return reply["value"]

def llm_query(prompt):
    return _rlm_call("llm_query", [prompt])

def llm_query_batched(prompts):
    return _rlm_call("llm_query_batched", [list(prompts)])

def recursive_llm(query, sub_context):
    return _rlm_call("recursive_llm", [query, sub_context])

def recursive_llm_batched(pairs):
    return _rlm_call("recursive_llm_batched", [[list(pair) for pair in pairs]])

def FINAL(answer):
    if not isinstance(answer, str):
        answer = _rlm_json.dumps(answer) if isinstance(answer, (dict, list, tuple)) else str(answer)
    print({final_mark!r} + _rlm_json.dumps(answer), flush=True)
    raise _RLMFinal()

def FINAL_VAR(name):
    if not isinstance(name, str):
        FINAL(name)
    if name not in globals():
        raise NameError(
            f"FINAL_VAR({{name!r}}): no variable named {{name!r}} exists. Assign the answer first "
            f"(answer = ...), then call FINAL_VAR('answer')."
        )
    FINAL(globals()[name])
'''


def _load_sdk() -> Any:
    try:
        from e2b_code_interpreter import Sandbox
    except ImportError:
        raise SandboxError(
            "The e2b sandbox needs the E2B SDK: pip install 'recursive-llm[e2b]' (e2b-code-interpreter)"
        ) from None
    return Sandbox


def check_available() -> None:
    """Raise SandboxError naming what is missing for `sandbox="e2b"`."""
    _load_sdk()
    if not os.environ.get("E2B_API_KEY"):
        raise SandboxError("The e2b sandbox needs an E2B API key: set E2B_API_KEY (or use sandbox='restricted')")


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
        sdk: Any = None,
    ) -> None:
        self.limits = limits or SandboxLimits()
        self.api_key = api_key or os.environ.get("E2B_API_KEY")
        self.template = template
        self.workdir = workdir
        self._sdk = sdk
        self._box: Any = None
        self._context: Any = None
        self._loaded = False

    # --- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> None:
        if self._box is not None:
            return
        sdk = self._sdk or _load_sdk()
        if not self.api_key:
            raise SandboxError("The e2b sandbox needs an E2B API key: set E2B_API_KEY or pass api_key=...")
        try:
            self._box = sdk.create(template=self.template, timeout=SANDBOX_LIFETIME_S, api_key=self.api_key)
            self._run(_PRELUDE.format(workdir=self.workdir, call_mark=CALL_MARK, final_mark=FINAL_MARK))
        except SandboxError:
            raise
        except Exception as exc:
            self.close()
            raise SandboxError(f"could not start an E2B sandbox: {type(exc).__name__}: {exc}") from exc

    def load(self, context: Any) -> None:
        if self._box is None:
            self.start()
        self._context = context
        self._upload_context()
        self._loaded = True

    def close(self) -> None:
        box, self._box = self._box, None
        if box is not None:
            # The sandbox may already be gone; closing must not fail a run.
            with contextlib.suppress(Exception):
                box.kill()

    # --- steps ---------------------------------------------------------------------------------------
    def execute(self, code: str, handler: SubcallHandler) -> ExecutionResult:
        if self._box is None:
            self.start()
        stream = _StdoutStream(lambda call: self._answer(call, handler))
        try:
            execution = self._box.run_code(
                code,
                on_stdout=stream.feed,
                on_stderr=stream.feed_stderr,
                timeout=self.limits.exec_timeout + SUBCALL_ALLOWANCE_S,
            )
        except Exception as exc:
            if type(exc).__name__ != "TimeoutException":
                raise SandboxError(f"the E2B sandbox failed: {type(exc).__name__}: {exc}") from exc
            self._restart()
            return ExecutionResult(
                output=clip_middle(stream.text(), self.limits.max_output_chars),
                error=(
                    "TimeoutError: the step ran too long and was stopped; the sandbox was restarted, so only "
                    "`context` is still defined."
                ),
                restarted=True,
            )
        output = stream.text()
        if execution.text is not None and stream.final is None:
            output += f"{execution.text}\n"
        error = None
        if execution.error is not None and execution.error.name != FINAL_SIGNAL:
            error = f"{execution.error.name}: {execution.error.value}"
        if stream.final is not None:
            error = None
        return ExecutionResult(
            output=clip_middle(output, self.limits.max_output_chars), error=error, final_answer=stream.final
        )

    # --- internals -----------------------------------------------------------------------------------
    def _answer(self, call: dict[str, Any], handler: SubcallHandler) -> None:
        try:
            reply: dict[str, Any] = {"value": handler(str(call["fn"]), list(call.get("args") or []), {})}
            json.dumps(reply)
        except Exception as exc:  # reported to the model's code as SubcallError, never lost
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        path = posixpath.join(self.workdir, f"reply-{call['id']}.json")
        self._box.files.write(path, json.dumps(reply, ensure_ascii=False))

    def _upload_context(self) -> None:
        context = self._context
        if isinstance(context, str):
            name, data, reader = "context.txt", context, "context_file.read()"
        else:
            name, data, reader = "context.json", json.dumps(context, ensure_ascii=False), "_rlm_json.load(context_file)"
        path = posixpath.join(self.workdir, name)
        self._box.files.write(path, data)
        self._run(f"with open({path!r}, encoding='utf-8') as context_file:\n    context = {reader}\ndel context_file")

    def _restart(self) -> None:
        self.close()
        self.start()
        if self._loaded:
            self._upload_context()

    def _run(self, code: str) -> None:
        execution = self._box.run_code(code, timeout=60)
        if execution.error is not None:
            raise SandboxError(f"E2B set-up code failed: {execution.error.name}: {execution.error.value}")


class _StdoutStream:
    """Reads streamed stdout line by line, acting on marker lines and keeping the rest as output."""

    def __init__(self, on_call: Callable[[dict[str, Any]], None]) -> None:
        self.on_call = on_call
        self.lines: list[str] = []
        self.final: str | None = None

    def feed(self, message: Any) -> None:
        # The SDK streams stdout as messages of whole lines (the last one may lack its newline).
        # Split on "\n" only: str.splitlines() also splits on the marker's own \x1e.
        for line in getattr(message, "line", str(message)).removesuffix("\n").split("\n"):
            if line.startswith(CALL_MARK):
                self.on_call(json.loads(line[len(CALL_MARK) :]))
            elif line.startswith(FINAL_MARK):
                self.final = json.loads(line[len(FINAL_MARK) :])
            else:
                self.lines.append(line)

    def feed_stderr(self, message: Any) -> None:
        self.lines.extend(getattr(message, "line", str(message)).removesuffix("\n").split("\n"))

    def text(self) -> str:
        return "".join(f"{line}\n" for line in self.lines)
