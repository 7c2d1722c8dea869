"""What one run's sandbox workers may make the host hold at once: the bytes of their messages.

Each worker's messages have a size cap of their own (64 MiB plus twice its context), and a call's
arguments stay on the host while the call runs: a `recursive_llm_batched` holds every child's
context until the children are done, and each child may send its own batch. Sixteen live nodes
(the default worker cap) each holding a frame near its cap put the host past a gigabyte from a
12-character context (attack round 8). One account per run bounds the sum: a frame is counted
from its header, before it is read, until the host is done with it; a frame that does not fit is
refused like any frame too large, and that worker is restarted (the run goes on).

The default leaves room for an honest decomposition: the root's frame cap, plus two copies of the
root's context per level of the tree (each level's sub-calls hold at most its slices of it), all
twice over, because a frame is counted at its peak, two copies, while it is decoded and parsed.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from typing import Any, overload

BASE_FRAME_BYTES = 64 << 20  # a worker's own cap, beyond twice its context


# Frames are counted at their decoded size: ASCII text takes a byte a character on the host,
# other text up to 4 (Python stores a string at the width of its widest character).
NON_ASCII_WIDTH = 4


# What one JSON value costs the host beyond its text once parsed: a short str is 56 bytes and its
# slot in a list 8; a float 24, an int 28-32, a dict entry about 50 beside its value. A list of
# 1.3 million "ab" (a 7.8 MB message) parsed to 77 MB (attack round 11).
VALUE_BYTES = 64


# An escape past Latin-1 ("\u0100" and up, "\ud83d\ude00"): ASCII text that decodes wide.
_WIDE_ESCAPE = re.compile(r"\\u(?!00)")


def parsed_bytes(text: str, values: int | None = None) -> int:
    """What parsing the JSON `text` may make the host hold: the text at its decoded width, and an
    object for each value. An ASCII frame holding "\ud83d\ude00" decodes to a string 4 bytes a
    character (attack round 12 counted 20 MB that built 80 MB); escapes of control characters
    ("\u000c", which the worker's encoder writes) keep a string at 1 byte a character. `values`:
    `json_values(text)` where the caller has it already."""
    narrow = text.isascii() and _WIDE_ESCAPE.search(text) is None
    counted = json_values(text) if values is None else values
    return len(text) * (1 if narrow else NON_ASCII_WIDTH) + VALUE_BYTES * counted


# Strings are told from the rest a chunk at a time, in C: each chunk split at its quotes (escapes
# removed first, see `_unescaped`), the pieces outside strings joined and counted, and whether the
# next chunk starts inside a string carried over. Two earlier ways held or took too much: a regex
# that read escapes itself kept ~185 bytes of state per escape (2 GB for a 48 MB CSV slice) and
# `re.sub` ~210 bytes per string (attack round 26); a Python step per string took 8.5 s for a 16 MB
# frame of short strings (attack round 27). A chunk's pieces are the most this holds.
_CHUNK = 1 << 14


@overload
def _outside_strings(plain: str) -> Iterator[str]: ...
@overload
def _outside_strings(plain: bytes | bytearray) -> Iterator[bytes | bytearray]: ...
def _outside_strings(plain: str | bytes | bytearray) -> Iterator[str | bytes | bytearray]:
    """The text of `plain` (its escapes removed) outside its strings, a chunk at a time. An unterminated
    string runs to the end, as the parser would read it before failing."""
    # One body for text and bytes: the overloads above say which comes back for which.
    quote: Any = '"' if isinstance(plain, str) else b'"'
    empty: Any = plain[:0]
    inside = False
    for start in range(0, len(plain), _CHUNK):
        chunk = plain[start : start + _CHUNK]
        # A bytearray's pieces are bytearrays, each with a buffer of its own: bytes cost half.
        pieces = (chunk if isinstance(chunk, (str, bytes)) else bytes(chunk)).split(quote)
        yield empty.join(pieces[1 if inside else 0 :: 2])
        if len(pieces) % 2 == 0:  # an odd number of quotes: the next chunk starts on the other side
            inside = not inside


def _unescaped(text: str) -> str:
    """`text` with no escape left that could hide or fake a quote. In JSON a backslash occurs only in
    a string, and each escape pairs it with the next character: removing the escaped backslashes
    (pairs, left to right, as `replace` finds them) and then the escaped quotes leaves only the
    quotes that open and close strings. Two copies while it runs (`counting_bytes`); none without a
    backslash."""
    return text.replace("\\\\", "").replace('\\"', "") if "\\" in text else text


def _unescaped_bytes(frame: bytes | bytearray) -> bytes | bytearray:
    """`_unescaped` for a frame's bytes."""
    return frame.replace(b"\\\\", b"").replace(b'\\"', b"") if b"\\" in frame else frame


def counting_bytes(text: str | bytes | bytearray) -> int:
    """What an exact count of `text` (`json_containers`, `exact_values`) holds
    beside it: the two copies `_unescaped` makes, and one chunk's pieces. The caller charges it first (attack
    round 26: the count of a frame cost up to 50 times the frame before the count refused it)."""
    backslash: str | bytes = "\\" if isinstance(text, str) else b"\\"
    quote: str | bytes = '"' if isinstance(text, str) else b'"'
    # One chunk at a time: its copy and join, and a piece (an object and its list slot) per quote in it.
    width = 1 if text.isascii() else NON_ASCII_WIDTH
    quotes = min(text.count(quote), _CHUNK)  # type: ignore[arg-type]
    pieces = VALUE_BYTES * (quotes + 1) + 2 * width * min(len(text), _CHUNK)
    if backslash not in text:  # type: ignore[operator]
        return pieces
    return pieces + 2 * width * len(text)


def json_containers(frame: bytes | bytearray) -> int:
    """The objects and lists parsing `frame` builds: its "{" and "[" outside strings (a JSON document
    handed to recursive_llm holds millions in its text, and builds none of them)."""
    return sum(chunk.count(b"{") + chunk.count(b"[") for chunk in _outside_strings(_unescaped_bytes(frame)))


def quick_values(text: str) -> int | None:
    """`json_values`' bound from one pass of C over `text`, or None where punctuation is dense and the
    strings must be told from the rest (`exact_values`; the caller charges `counting_bytes` first).
    Callers pass what they got on to `parsed_bytes`, so a frame is counted once."""
    bound = _punctuation(text) + 1
    return bound if bound * VALUE_BYTES <= len(text) else None


def exact_values(text: str) -> int:
    """`json_values` with the punctuation inside strings left out, so commas in a string do not count
    (a CSV slice is not a million values)."""
    return sum(_punctuation(chunk) for chunk in _outside_strings(_unescaped(text))) + 1


def json_values(text: str) -> int:
    """At most how many values parsing `text` builds: every value but the outermost follows a ",",
    a ":", a "[" or a "{" outside strings. One pass of C counts when punctuation is sparse (an upper
    bound costing at most the text's own size again); where it is dense, the exact count."""
    quick = quick_values(text)
    return exact_values(text) if quick is None else quick


def _punctuation(text: str) -> int:
    # A ":" counts twice: the key before it is a value too, and while an object with many distinct
    # keys is parsed, the parser's key cache and the dict's growing table hold about as much again
    # (attack round 13: a frame of one such object peaked at 1.19 times its count). A "[" or "{"
    # counts twice too: a list or dict holding a value costs about 100 bytes (object, GC header,
    # item array), not 64 (attack round 18: lists nested 50 deep parsed to 1.3 times their count).
    return text.count(",") + 2 * sum(text.count(mark) for mark in ":[{")


# A frame is counted at its peak: while it is decoded its bytes and text coexist, while it is
# parsed its text and the objects built from it. So the account holds twice the frames it allows.
PEAK_COPIES = 2


def run_budget_bytes(root_context_chars: int, max_depth: int, ascii_only: bool = True) -> int:
    """The bytes of worker messages one run may hold at once (see the module's docstring), at the
    root context's decoded width, so an honest split of a non-ASCII context fits as an ASCII one does."""
    width = 1 if ascii_only else NON_ASCII_WIDTH
    return PEAK_COPIES * (BASE_FRAME_BYTES + 2 * root_context_chars * width * (max_depth + 1))


class HostFrameBudget:
    """A thread-safe count of message bytes held for a run's workers, against one limit."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self.held_bytes = 0
        self._lock = threading.Lock()

    def take(self, size: int) -> bool:
        """Count `size` bytes as held; False (nothing counted) if that would pass the limit."""
        return self.exchange(0, size)

    def exchange(self, held: int, size: int) -> bool:
        """Count `size` bytes in place of `held` in one step: a frame read in stages is counted
        throughout, never released and taken again (another worker could take the gap). False (and
        `held` given back) if `size` would pass the limit."""
        with self._lock:
            rest = max(0, self.held_bytes - held)
            if rest + size > self.limit_bytes:
                self.held_bytes = rest
                return False
            self.held_bytes = rest + size
            return True

    def give(self, size: int) -> None:
        with self._lock:
            self.held_bytes = max(0, self.held_bytes - size)
