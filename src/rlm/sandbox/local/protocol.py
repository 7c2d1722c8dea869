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


def read_frame(stream: IO[bytes]) -> bytes:
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


def _read_exactly(stream: IO[bytes], size: int) -> bytes:
    chunks = []
    remaining = size
    while remaining:
        chunk = stream.read(remaining)
        if not chunk:
            raise ProtocolError("channel closed")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)
