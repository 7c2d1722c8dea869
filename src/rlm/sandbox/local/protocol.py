"""Length-prefixed JSON frames between the host and the sandbox worker.

Imported by both sides (the worker loads it as a top-level module, without the `rlm` package);
the host reads and writes through `channel`, which adds deadlines. JSON rather than pickle: the
host must never unpickle what untrusted code produced.
"""

from __future__ import annotations

import json
import struct
from typing import IO, Any

HEADER = struct.Struct(">I")
# A single frame larger than this is refused: it can only come from a runaway step.
MAX_FRAME_BYTES = (1 << 31) - 1
# Values nested deeper than this are refused before they are sent: the other side's JSON parser
# would otherwise hit Python's recursion limit.
MAX_NESTING = 100


class ProtocolError(Exception):
    """The other side closed the channel or sent something that is not a frame."""


def header(size: int) -> bytes:
    return HEADER.pack(size)


def to_utf8(text: str) -> bytes:
    # A lone surrogate ("\ud800", which a model can write) has no UTF-8 form; it becomes "?"
    # rather than ending the worker or the run.
    return text.encode("utf-8", "replace")


def check_nesting(value: Any, limit: int = MAX_NESTING) -> None:
    """ValueError if lists/dicts in `value` nest deeper than `limit` (checked without recursion)."""
    pending = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, (list, tuple, dict)):
            if depth >= limit:
                raise ValueError(f"data nested deeper than {limit} levels cannot cross the sandbox boundary")
            children = item.values() if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children)


def encode(message: dict[str, Any]) -> bytes:
    check_nesting(message)
    return to_utf8(json.dumps(message, ensure_ascii=False))


def write_frame(stream: IO[bytes], payload: bytes) -> None:
    stream.write(HEADER.pack(len(payload)))
    stream.write(payload)
    stream.flush()


def read_frame(stream: IO[bytes]) -> bytes | bytearray:
    header_bytes = _read_exactly(stream, HEADER.size)
    (size,) = HEADER.unpack(header_bytes)
    if size > MAX_FRAME_BYTES:
        raise ProtocolError(f"frame of {size} bytes exceeds the limit")
    try:
        buffer = bytearray(size)
    except MemoryError:
        # Read the frame away so the channel stays in step, then report the shortage.
        _skip(stream, size)
        raise
    return _read_into(stream, buffer)


def send(stream: IO[bytes], message: dict[str, Any]) -> None:
    write_frame(stream, encode(message))


def receive(stream: IO[bytes]) -> dict[str, Any]:
    message = json.loads(read_frame(stream).decode("utf-8", "replace"))
    if not isinstance(message, dict):
        raise ProtocolError("expected a JSON object frame")
    return message


def _read_exactly(stream: IO[bytes], size: int) -> bytearray:
    return _read_into(stream, bytearray(size))


def _read_into(stream: IO[bytes], buffer: bytearray) -> bytearray:
    # Read into one preallocated buffer: joining pieces would hold the frame twice.
    view = memoryview(buffer)
    filled = 0
    while filled < len(buffer):
        got = stream.readinto(view[filled:])  # type: ignore[attr-defined,unused-ignore]
        if not got:
            raise ProtocolError("channel closed")
        filled += got
    view.release()
    return buffer


def _skip(stream: IO[bytes], size: int) -> None:
    while size > 0:
        got = stream.read(min(size, 1 << 16))
        if not got:
            raise ProtocolError("channel closed")
        size -= len(got)
