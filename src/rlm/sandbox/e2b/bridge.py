"""The marker protocol between the model's code in an E2B sandbox and the host.

`sandbox.py` runs `prelude()` in each new sandbox and reads the streamed output with `OutputReader`:
a sub-call is a marker line on stdout, answered by a reply file the waiting code reads.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from typing import Any

from rlm.sandbox.local.policy import READY_MODULES

CALL_MARK = "\x1eRLM_CALL "
FINAL_MARK = "\x1eRLM_FINAL "
_MARK_START = "\x1eRLM_"
FINAL_SIGNAL = "_RLMFinal"
_CALL_ID = re.compile(r"[0-9a-f]{32}")

_PRELUDE = r'''
import json as _rlm_json, os as _rlm_os, sys as _rlm_sys, time as _rlm_time, uuid as _rlm_uuid
import __READY_MODULES__
_RLM_DIR = __WORKDIR__


class _RLMStdout:
    """The kernel's stdout, remembering whether the last line printed is still open."""

    def __init__(self, stream):
        self._rlm_stream = stream
        self._rlm_line_open = False

    def write(self, text):
        if text:
            self._rlm_line_open = not text.endswith("\n")
        return self._rlm_stream.write(text)

    def __getattr__(self, name):
        return getattr(self._rlm_stream, name)


# The bridge keeps its own reference: code that reassigns sys.stdout must not cut it off.
_rlm_stdout = _RLMStdout(_rlm_sys.stdout)
_rlm_sys.stdout = _rlm_stdout


class SubcallError(Exception):
    """A host function (llm_query, recursive_llm, ...) failed; the message says why."""


class _RLMFinal(BaseException):
    pass


def _rlm_emit(mark, payload):
    # A marker starts its own line, also after print(..., end=""), and is flushed at once: the
    # kernel streams output in flushes, not lines.
    opening = "\n" if _rlm_stdout._rlm_line_open else ""
    _rlm_stdout.write(opening + mark + _rlm_json.dumps(payload) + "\n")
    _rlm_stdout.flush()


def _rlm_call(fn, args):
    call_id = _rlm_uuid.uuid4().hex
    path = _rlm_os.path.join(_RLM_DIR, "reply-" + call_id + ".json")
    _rlm_emit(__CALL_MARK__, {"id": call_id, "fn": fn, "args": args})
    while True:
        if _rlm_os.path.exists(path):
            try:
                with open(path, encoding="utf-8") as reply_file:
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
    _rlm_emit(__FINAL_MARK__, answer)
    raise _RLMFinal()


def FINAL_VAR(name):
    if not isinstance(name, str):
        FINAL(name)
    if name not in globals():
        raise NameError(
            f"FINAL_VAR({name!r}): no variable named {name!r} exists. Assign the answer first "
            f"(answer = ...), then call FINAL_VAR('answer')."
        )
    FINAL(globals()[name])
'''


def prelude(workdir: str) -> str:
    """The code that defines the REPL functions in a new sandbox."""
    return (
        _PRELUDE.replace("__WORKDIR__", repr(workdir))
        .replace("__CALL_MARK__", repr(CALL_MARK))
        .replace("__FINAL_MARK__", repr(FINAL_MARK))
        .replace("__READY_MODULES__", ", ".join(READY_MODULES))  # bound before any step, as locally
    )


def parse_call(payload: str) -> dict[str, Any] | None:
    """A call marker's JSON, or None when it is not a well-formed call (then it is plain output)."""
    try:
        call = json.loads(payload)
    except (ValueError, RecursionError):  # deep nesting is malformed too: plain output, never a raise
        return None
    if not isinstance(call, dict) or not isinstance(call.get("fn"), str) or not isinstance(call.get("args"), list):
        return None
    if not isinstance(call.get("id"), str) or not _CALL_ID.fullmatch(call["id"]):
        return None
    return call


class OutputReader:
    """Rebuilds lines from the SDK's output messages and acts on marker lines.

    A message holds whatever the kernel flushed: several lines, or part of one (`'partial'`, then
    `' end\\n'`), so text is buffered until its newline. The SDK calls `on_stdout`/`on_stderr` on the
    thread running `run_code`; `on_call` must only hand the call over, never block on the answer.
    Nothing here raises: a malformed marker is kept as plain output.
    """

    def __init__(self, on_call: Callable[[dict[str, Any]], None]) -> None:
        self._on_call = on_call
        self._lock = threading.Lock()
        self._open = {"stdout": "", "stderr": ""}
        self._lines: list[str] = []
        self.final: str | None = None

    def on_stdout(self, message: Any) -> None:
        self._feed("stdout", message)

    def on_stderr(self, message: Any) -> None:
        self._feed("stderr", message)

    def finish(self) -> None:
        """The cell is over: an unterminated last line is still a line."""
        with self._lock:
            for stream, text in self._open.items():
                if text:
                    self._open[stream] = ""
                    self._line(text, markers=stream == "stdout")

    def text(self) -> str:
        with self._lock:
            lines = [*self._lines, *(text for text in self._open.values() if text)]
        return "".join(f"{line}\n" for line in lines)

    def _feed(self, stream: str, message: Any) -> None:
        text = getattr(message, "line", message)
        text = text if isinstance(text, str) else str(text)
        with self._lock:
            *complete, self._open[stream] = (self._open[stream] + text).split("\n")
            for line in complete:
                self._line(line, markers=stream == "stdout")

    def _line(self, line: str, *, markers: bool) -> None:
        # A marker is looked for anywhere in the line, not only at its start: the prelude starts
        # markers on their own line, but output written around its stdout wrapper (a reassigned
        # sys.stdout, a kernel that resets it) can still leave one mid-line.
        at = line.find(_MARK_START) if markers else -1
        if at >= 0 and self._marker(line[at:]):
            if at:
                self._lines.append(line[:at])
            return
        self._lines.append(line)

    def _marker(self, text: str) -> bool:
        if text.startswith(CALL_MARK):
            call = parse_call(text[len(CALL_MARK) :])
            if call is None:
                return False
            self._on_call(call)
            return True
        if text.startswith(FINAL_MARK):
            try:
                answer = json.loads(text[len(FINAL_MARK) :])
            except (ValueError, RecursionError):
                return False
            if not isinstance(answer, str):
                return False
            self.final = answer
            return True
        return False
