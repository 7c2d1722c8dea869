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

from rlm.sandbox.host_memory import (
    BASE_FRAME_BYTES,
    NON_ASCII_WIDTH,
    VALUE_BYTES,
    HostFrameBudget,
    counting_bytes,
    exact_values,
    parsed_bytes,
    quick_values,
)
from rlm.sandbox.local.output import OutputBuffer
from rlm.sandbox.local.policy import READY_MODULES
from rlm.utf8 import may_hold_surrogates, utf8_text, utf8_values

CALL_MARK = "\x1eRLM_CALL "
FINAL_MARK = "\x1eRLM_FINAL "
_MARK_START = "\x1eRLM_"
FINAL_SIGNAL = "_RLMFinal"
_CALL_ID = re.compile(r"[0-9a-f]{32}")
# What the SDK may hold of one step's printed output before the step is stopped (its `run_code`
# keeps every streamed message until the cell ends), and what one message costs beside its text.
MAX_STEP_OUTPUT_BYTES = 8 << 20
MESSAGE_BYTES = 256

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
        if may_hold_surrogates(payload):
            call = utf8_values(call)
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
    `' end\\n'`), so text is kept until its newline. The SDK calls `on_stdout`/`on_stderr` on the
    thread running `run_code`; `on_call` must only hand the call over, never block on the answer.
    Nothing here raises: a malformed marker is kept as plain output.

    What a step prints is kept as the local worker keeps it (a head and a tail of `output_limit`
    characters each): a step printing in a loop held its whole output on the host (attack round
    10). But the SDK's `run_code` also keeps every message it streams until the cell ends, so what
    the step printed counts against the run's account (`budget`) and a per-step cap
    (`max_step_bytes`) as it arrives; past either, `on_too_much` is called once, and the sandbox
    stops the step (which frees the SDK's copy). An open line is kept up to `max_line_chars`; past
    that it cannot be a marker and goes to the output as plain text up to its newline. A call
    waiting for the host is counted against the account at its parsed size until `answered`; one
    that does not fit is plain output, so its code waits for a reply that never comes and the
    step's limit ends it.
    """

    def __init__(
        self,
        on_call: Callable[[dict[str, Any], int], None],
        *,
        output_limit: int = 100_000,
        max_line_chars: int = BASE_FRAME_BYTES,
        budget: HostFrameBudget | None = None,
        max_step_bytes: int = MAX_STEP_OUTPUT_BYTES,
        on_too_much: Callable[[], None] = lambda: None,
    ) -> None:
        self._on_call = on_call
        self._on_too_much = on_too_much
        self._max_step_bytes = max_step_bytes
        self._streamed = 0  # bytes the SDK holds for this step, as counted against the account
        self.too_much = False
        self._lock = threading.Lock()
        self._output = OutputBuffer(output_limit)
        self._max_line_chars = max_line_chars
        self._budget = budget
        self._open: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self._open_chars = {"stdout": 0, "stderr": 0}
        self._spilling = {"stdout": False, "stderr": False}  # the open line was too long for a marker
        self._closed = False
        self.final: str | None = None

    def on_stdout(self, message: Any) -> None:
        self._feed("stdout", message)

    def on_stderr(self, message: Any) -> None:
        self._feed("stderr", message)

    def on_result(self, result: Any) -> None:
        """A display result or the step's trailing value: the SDK keeps each until the step ends, as
        it keeps printed text, so each counts as printed text does (attack round 25: 40 displays of
        4 MB, or one 100 MB value, were held uncounted)."""
        self._count_message(result)

    def on_error(self, error: Any) -> None:
        """The step's error: its value and its traceback, which repeats the value, both held whole."""
        self._count_message(error)

    def finish(self) -> None:
        """The cell is over: an unterminated last line is still a line."""
        with self._lock:
            for stream in self._open:
                if self._open[stream] or self._spilling[stream]:
                    self._end_line(stream)

    def close(self) -> None:
        """The step is over: later output (a killed sandbox's last messages) is ignored, and no call
        is counted against the account any more."""
        with self._lock:
            self._closed = True
            if self._budget is not None:
                self._budget.give(self._streamed)
            self._streamed = 0

    def answered(self, held: int) -> None:
        """A call handed over with `held` bytes counted is done with: they no longer count."""
        if self._budget is not None:
            self._budget.give(held)

    def text(self) -> str:
        with self._lock:
            open_lines = ["".join(parts) + "\n" for parts in self._open.values() if parts]
            return self._output.getvalue() + "".join(open_lines)

    def _feed(self, stream: str, message: Any) -> None:
        text = getattr(message, "line", message)
        text = utf8_text(text if isinstance(text, str) else str(text))  # the SDK's JSON may hold "\udc9b"
        with self._lock:
            if self._closed or self.too_much:  # a step being stopped: what it prints now is dropped
                return
            self._count_streamed(len(text) * (1 if text.isascii() else NON_ASCII_WIDTH) + MESSAGE_BYTES)
            if self.too_much:
                return
            newline = text.find("\n")
            if newline < 0:
                self._add(stream, text)
                return
            self._add(stream, text[:newline])  # the open line ends here
            self._end_line(stream)
            last = text.rfind("\n")
            self._whole_lines(stream, text[newline + 1 : last + 1])
            self._add(stream, text[last + 1 :])

    def _whole_lines(self, stream: str, lines: str) -> None:
        """Complete lines, each ending in a newline: written in one piece but for those that may hold
        a marker (one at a time, a million empty lines cost seconds under the lock)."""
        done = 0
        while stream == "stdout":
            at = lines.find(_MARK_START, done)
            if at < 0:
                break
            start = max(done, lines.rfind("\n", done, at) + 1)
            end = lines.find("\n", at)
            self._output.write(lines[done:start])
            self._line(lines[start:end], markers=True)
            done = end + 1
        self._output.write(lines[done:])

    def _count_message(self, message: Any) -> None:
        with self._lock:
            if not (self._closed or self.too_much):
                self._count_streamed(held_bytes(message) + MESSAGE_BYTES)

    def _count_streamed(self, size: int) -> None:
        if self.too_much:
            return
        if self._streamed + size > self._max_step_bytes or (self._budget is not None and not self._budget.take(size)):
            self.too_much = True
            self._on_too_much()
            return
        self._streamed += size

    def _add(self, stream: str, piece: str) -> None:
        # Pieces are joined once, at the newline: joining on every flush made a line flushed a
        # character at a time quadratic.
        if not piece:
            return
        if self._spilling[stream]:
            self._output.write(piece)
            return
        self._open[stream].append(piece)
        self._open_chars[stream] += len(piece)
        if self._open_chars[stream] > self._max_line_chars:
            for part in self._open[stream]:
                self._output.write(part)
            self._open[stream], self._open_chars[stream], self._spilling[stream] = [], 0, True

    def _end_line(self, stream: str) -> None:
        if self._spilling[stream]:
            self._output.write("\n")
            self._spilling[stream] = False
            return
        line = "".join(self._open[stream])
        self._open[stream], self._open_chars[stream] = [], 0
        self._line(line, markers=stream == "stdout")

    def _line(self, line: str, *, markers: bool) -> None:
        # A marker is looked for anywhere in the line, not only at its start: the prelude starts
        # markers on their own line, but output written around its stdout wrapper (a reassigned
        # sys.stdout, a kernel that resets it) can still leave one mid-line.
        at = line.find(_MARK_START) if markers else -1
        if at >= 0 and self._marker(line[at:]):
            if at:
                self._output.write(line[:at] + "\n")
            return
        self._output.write(line + "\n")

    def _marker(self, text: str) -> bool:
        if text.startswith(CALL_MARK):
            payload = text[len(CALL_MARK) :]
            # Counting a payload dense with punctuation holds copies of it: taken from the account
            # first, and given back once counted (attack round 26).
            values = quick_values(payload)
            if values is None:
                counting = counting_bytes(payload)
                if self._budget is not None and not self._budget.take(counting):
                    return False
                try:
                    values = exact_values(payload)
                finally:
                    self.answered(counting)
            held = parsed_bytes(payload, values)
            if self._budget is not None and not self._budget.take(held):
                return False
            call = parse_call(payload)
            if call is None:
                self.answered(held)
                return False
            self._on_call(call, held)
            return True
        if text.startswith(FINAL_MARK):
            try:
                answer = json.loads(text[len(FINAL_MARK) :])
            except (ValueError, RecursionError):
                return False
            if not isinstance(answer, str):
                return False
            self.final = utf8_text(answer)
            return True
        return False


def held_bytes(value: Any) -> int:
    """About what the SDK holds for a message it parsed into `value`: an object for each value, and
    its strings' characters at their decoded width (a chart's objects walked by their attributes). Walked with a
    stack, each container once: a parsed message may nest deep. Only containers are remembered: a
    set of every float's id cost 15 times the floats (attack round 26)."""
    total, stack, seen = 0, [value], set()
    while stack:
        item = stack.pop()
        total += VALUE_BYTES  # the object itself: a str too (a million 3-letter strings were 3 MB counted, 68 MB held)
        if isinstance(item, str):
            total += len(item) * (1 if item.isascii() else NON_ASCII_WIDTH)
            continue
        if isinstance(item, (dict, list, tuple)):
            children: Any = item
        elif hasattr(item, "__dict__") and not isinstance(item, type):
            children = vars(item).values()
        else:
            continue  # a number, None: nothing inside, and never worth remembering
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        else:
            stack.extend(children)
    return total
