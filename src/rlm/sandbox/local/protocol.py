"""Length-prefixed JSON frames between the host and the sandbox worker.

Imported by both sides (the worker loads it as a top-level module, without the `rlm` package).
JSON rather than pickle: the host must never unpickle what untrusted code produced.
"""

from __future__ import annotations

import json
import struct
from typing import IO, Any

_HEADER = struct.Struct(">I")
# A single frame larger than this is refused: it can only come from a runaway step.
MAX_FRAME_BYTES = 1 << 31


class ProtocolError(Exception):
    """The other side closed the channel or sent something that is not a frame."""


def write_frame(stream: IO[bytes], payload: bytes) -> None:
    stream.write(_HEADER.pack(len(payload)))
    stream.write(payload)
    stream.flush()


def write_text_frame(stream: IO[bytes], text: str, chunk_chars: int = 8 << 20) -> None:
    """One frame holding `text` as UTF-8, encoded piece by piece.

    A 100 MB context is never copied whole into bytes on the host: the pieces are written as they
    are encoded. Non-ASCII text is encoded twice, first only to learn the frame's length.
    """
    starts = range(0, len(text), chunk_chars)
    size = len(text) if text.isascii() else sum(len(text[i : i + chunk_chars].encode("utf-8")) for i in starts)
    stream.write(_HEADER.pack(size))
    for i in starts:
        stream.write(text[i : i + chunk_chars].encode("utf-8"))
    stream.flush()


def read_frame(stream: IO[bytes]) -> bytes | bytearray:
    header = _read_exactly(stream, _HEADER.size)
    (size,) = _HEADER.unpack(header)
    if size > MAX_FRAME_BYTES:
        raise ProtocolError(f"frame of {size} bytes exceeds the limit")
    return _read_exactly(stream, size)


def send(stream: IO[bytes], message: dict[str, Any]) -> None:
    write_frame(stream, json.dumps(message, ensure_ascii=False).encode("utf-8"))


def receive(stream: IO[bytes]) -> dict[str, Any]:
    message = json.loads(read_frame(stream).decode("utf-8"))
    if not isinstance(message, dict):
        raise ProtocolError("expected a JSON object frame")
    return message


def _read_exactly(stream: IO[bytes], size: int) -> bytes | bytearray:
    # Read into one preallocated buffer: joining pieces would hold the frame twice.
    buffer = bytearray(size)
    view = memoryview(buffer)
    filled = 0
    while filled < size:
        got = stream.readinto(view[filled:])  # type: ignore[attr-defined,unused-ignore]
        if not got:
            raise ProtocolError("channel closed")
        filled += got
    view.release()
    return buffer
