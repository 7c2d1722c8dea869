"""The host's end of the worker's pipes: every read and write has a deadline and a size cap.

The worker may be running hostile code, so the host never blocks on it: a worker that stops
reading, sends half a frame, a frame too large, too deeply nested or not UTF-8, is reported as a
`ChannelError` and the sandbox kills and restarts it. The frame format lives in `protocol`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import time
from typing import Any

from rlm.sandbox.host_memory import (
    NON_ASCII_WIDTH,
    HostFrameBudget,
    counting_bytes,
    exact_values,
    json_containers,
    parsed_bytes,
    quick_values,
)
from rlm.sandbox.local import protocol
from rlm.utf8 import may_hold_surrogates, utf8_values

_F_SETPIPE_SZ = 1031  # Linux: larger pipes mean fewer wake-ups for a 100 MB context
_PIPE_BYTES = 1 << 20
_WRITE_CHUNK = 1 << 20
# Objects and lists one frame may hold: far above any sub-call's arguments, far below what could
# exhaust the host's memory (the run's frame budget bounds it too, where a run set one).
MAX_CONTAINERS = 1_000_000

# Bytes the host holds per UTF-8 byte while non-ASCII text is decoded: the bytes themselves, the
# decoder's 4-byte-wide buffer and the narrower ones it widened from, 1 and 2 bytes wide (7 times
# the frame for text that widens twice, attack round 19; 5, then 6 were counted).
DECODE_PEAK = 7
# Copies of a JSON string the parser holds at once when it has escapes ("\n" in every chunk of a
# document): the frame's text, its growing, over-allocated buffer, and the string it is cut to
# (1.75 times the count for a long run and one escape, attack round 19). Without escapes a string is
# one slice of the text.
ESCAPED_PARSE_COPIES = 3


class ChannelError(Exception):
    """The worker closed the channel, stalled past a deadline, or sent something that is not a frame."""


class WorkerChannel:
    def __init__(
        self, to_worker: int, from_worker: int, max_frame_bytes: int, budget: HostFrameBudget | None = None
    ) -> None:
        self.to_worker = to_worker
        self.from_worker = from_worker
        self.max_frame_bytes = max_frame_bytes
        # The run's account of message bytes held on the host; this channel's last frame counts
        # until `release` (the sandbox calls it once it is done with the message) or the next frame.
        self.budget = budget
        self._held = 0
        for fd in (to_worker, from_worker):
            os.set_blocking(fd, False)
            with contextlib.suppress(OSError):
                fcntl.fcntl(fd, _F_SETPIPE_SZ, _PIPE_BYTES)

    # --- writing -----------------------------------------------------------------------------------
    def send(self, message: dict[str, Any], deadline: float) -> None:
        self.send_payload(protocol.encode(message), deadline)

    def send_payload(self, payload: bytes, deadline: float) -> None:
        self._write(protocol.header(len(payload)), deadline)
        view = memoryview(payload)
        for start in range(0, len(payload), _WRITE_CHUNK):
            self._write(view[start : start + _WRITE_CHUNK], deadline)

    def send_text(self, text: str, deadline: float, chunk: int = 8 << 20) -> None:
        """One frame holding `text` as UTF-8, encoded piece by piece (a 100 MB context is never
        held twice); non-ASCII text is encoded twice, first only to learn the frame's length."""
        starts = range(0, len(text), chunk)
        ascii_only = text.isascii()
        size = len(text) if ascii_only else sum(len(protocol.to_utf8(text[i : i + chunk])) for i in starts)
        self._write(protocol.header(size), deadline)
        for i in starts:
            piece = protocol.to_utf8(text[i : i + chunk])
            view = memoryview(piece)
            for start in range(0, len(piece), _WRITE_CHUNK):
                self._write(view[start : start + _WRITE_CHUNK], deadline)

    def _write(self, data: bytes | memoryview, deadline: float) -> None:
        view = memoryview(data)
        while view:
            self._wait(self.to_worker, deadline, writing=True)
            try:
                written = os.write(self.to_worker, view)
            except BlockingIOError:
                continue
            except OSError as exc:  # EPIPE: the worker is gone
                raise ChannelError(f"the worker stopped reading ({exc.strerror})") from None
            view = view[written:]

    # --- reading -----------------------------------------------------------------------------------
    def receive(self, deadline: float) -> dict[str, Any] | None:
        """The next message, or None if the deadline passed before a frame began.

        A frame that began must finish by the deadline too, or it is a `ChannelError`.
        """
        if not self._ready(deadline):
            return None
        (size,) = protocol.HEADER.unpack(self._read_exactly(protocol.HEADER.size, deadline))
        if size > self.max_frame_bytes:
            raise ChannelError(f"the worker sent a frame of {size} bytes; the limit is {self.max_frame_bytes}")
        self._hold(size)
        raw = self._read_exactly(size, deadline)
        # Decoded, non-ASCII text takes up to 4 bytes a character (one emoji widens the whole
        # string): count the frame at that width before decoding it. Each stage counts every copy
        # that exists while it runs: the bytes and their text while decoding, the text and what
        # parsing builds while parsing (counting one of two let a 60 MB frame take 120 MB, round 17).
        ascii_only = raw.isascii()
        decoded = size if ascii_only else NON_ASCII_WIDTH * size
        self._hold(2 * size if ascii_only else DECODE_PEAK * size)
        # A few bytes of JSON can become tens of bytes of Python objects ("{}," is a dict): bound
        # what parsing may build on the host, whatever the frame's size.
        containers = raw.count(b"{") + raw.count(b"[")
        if containers > MAX_CONTAINERS:  # the brackets of text count only in this quick bound: count exactly
            self._hold(size + counting_bytes(raw))  # ... and count what counting holds, first
            containers = json_containers(raw)
            self._hold(2 * size if ascii_only else DECODE_PEAK * size)
        if containers > MAX_CONTAINERS:
            raise ChannelError(
                f"the worker sent a frame of {containers} JSON objects and lists; the limit is {MAX_CONTAINERS}"
            )
        try:
            text = raw.decode("utf-8")
            del raw
            # ... and each value is an object of its own: the frame counts at what parsing builds,
            # before it is parsed, and then at that alone. Counting the values of a text dense with
            # punctuation holds copies of it: counted before it runs (attack round 26).
            values = quick_values(text)
            if values is None:
                self._hold(decoded + counting_bytes(text))
                values = exact_values(text)
            parsed = parsed_bytes(text, values)
            repair = may_hold_surrogates(text)
            self._hold(decoded + (ESCAPED_PARSE_COPIES if "\\" in text else 1) * parsed)
            message = json.loads(text)
            del text
            if repair:
                # Each repaired string is encoded and decoded again beside the original (rlm/utf8.py);
                # its UTF-8 is at most the frame's bytes, so the decode peaks as the frame's did, and
                # dicts with repaired keys are rebuilt (attack round 18: 1.6 times, uncounted).
                self._hold(parsed + DECODE_PEAK * size)
                message = utf8_values(message)
            self._hold(parsed)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise ChannelError(f"the worker sent a malformed frame ({type(exc).__name__})") from None
        if not isinstance(message, dict):
            raise ChannelError("the worker sent a frame that is not a message")
        return message

    def release(self) -> None:
        """The host is done with the last frame: its bytes no longer count against the run's budget."""
        if self.budget is not None and self._held:
            self.budget.give(self._held)
        self._held = 0

    def _hold(self, size: int) -> None:
        """Count a frame against the run's budget (in place of what it counted so far) before reading
        or decoding it: those are what take the memory."""
        if self.budget is None:
            return
        held, self._held = self._held, 0
        if not self.budget.exchange(held, size):
            raise ChannelError(
                f"the worker sent a frame of {size:,} bytes while the run's workers already held "
                f"{self.budget.held_bytes:,} of the {self.budget.limit_bytes:,} bytes the host keeps for "
                "them (sub-call arguments across the tree): send smaller pieces, or fewer at once"
            )
        self._held = size

    def _ready(self, deadline: float) -> bool:
        return _poll(self.from_worker, select.POLLIN, deadline)

    def _read_exactly(self, size: int, deadline: float) -> bytearray:
        buffer = bytearray(size)
        view = memoryview(buffer)
        filled = 0
        while filled < size:
            self._wait(self.from_worker, deadline, writing=False)
            try:
                got = os.readv(self.from_worker, [view[filled:]])
            except BlockingIOError:
                continue
            if not got:
                raise ChannelError("the worker closed its channel")
            filled += got
        view.release()
        return buffer

    def _wait(self, fd: int, deadline: float, *, writing: bool) -> None:
        if not _poll(fd, select.POLLOUT if writing else select.POLLIN, deadline):
            action = "take" if writing else "finish"
            raise ChannelError(f"the worker did not {action} a message in time")


def _poll(fd: int, event: int, deadline: float) -> bool:
    """Whether `fd` is ready (or closed, which the next read or write reports) before `deadline`."""
    # poll, not select: a host running many sandboxes can hold descriptors past select's 1024.
    poller = select.poll()
    poller.register(fd, event)
    remaining = deadline - time.monotonic()
    while remaining > 0:
        if poller.poll(max(1, int(remaining * 1000))):
            return True
        remaining = deadline - time.monotonic()
    return False
