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


def parsed_bytes(text: str) -> int:
    """What parsing the JSON `text` may make the host hold: the text at its decoded width, and an
    object for each value. An ASCII frame holding "\ud83d\ude00" decodes to a string 4 bytes a
    character (attack round 12 counted 20 MB that built 80 MB); escapes of control characters
    ("\u000c", which the worker's encoder writes) keep a string at 1 byte a character."""
    narrow = text.isascii() and _WIDE_ESCAPE.search(text) is None
    return len(text) * (1 if narrow else NON_ASCII_WIDTH) + VALUE_BYTES * json_values(text)


# A JSON string once its escapes are gone (`_unescaped`), or an unterminated one up to the end: it
# always matches where it starts, so a scan never backtracks. It has no repeated group: the pattern
# that read escapes itself kept ~185 bytes of backtracking state per escape, 2 GB for a 48 MB CSV
# slice with a "\n" on every line; and the strings are walked, not cut out with `re.sub`, which
# kept ~210 bytes per string until it joined the rest (attack round 26). The walk is C's regex
# engine with one Python step per string: five million strings in under a second.
_PLAIN_STRING = re.compile(r'"[^"]*(?:"|\Z)')
_PLAIN_STRING_BYTES = re.compile(rb'"[^"]*(?:"|\Z)')


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
    """What an exact count of `text` (`json_containers`, `json_values` past its quick bound) holds
    beside it: the two copies `_unescaped` makes. The caller charges it before counting (attack
    round 26: the count of a frame cost up to 50 times the frame before the count refused it)."""
    backslash: str | bytes = "\\" if isinstance(text, str) else b"\\"
    if backslash not in text:  # type: ignore[operator]
        return 0
    return 2 * len(text) * (1 if text.isascii() else NON_ASCII_WIDTH)


def json_containers(frame: bytes | bytearray) -> int:
    """The objects and lists parsing `frame` builds: its "{" and "[" outside strings (a JSON document
    handed to recursive_llm holds millions in its text, and builds none of them)."""
    plain = _unescaped_bytes(frame)
    inside = 0
    for string in _PLAIN_STRING_BYTES.finditer(plain):
        start, end = string.span()
        if end - start > 2:
            inside += plain.count(b"{", start, end) + plain.count(b"[", start, end)
    return plain.count(b"{") + plain.count(b"[") - inside


def needs_exact_count(text: str) -> bool:
    """Whether `json_values` must tell the punctuation inside strings from the rest (then the caller
    charges `counting_bytes` first)."""
    return (_punctuation(text) + 1) * VALUE_BYTES > len(text)


def json_values(text: str) -> int:
    """At most how many values parsing `text` builds: every value but the outermost follows a ",",
    a ":", a "[" or a "{" outside strings. One pass of C counts when punctuation is sparse (an upper
    bound costing at most the text's own size again); where it is dense, the punctuation inside
    strings is taken off, so commas in a string do not count (a CSV slice is not a million values)."""
    if not needs_exact_count(text):
        return _punctuation(text) + 1
    plain = _unescaped(text)
    inside = 0
    for string in _PLAIN_STRING.finditer(plain):
        start, end = string.span()
        if end - start > 2:
            inside += _punctuation(plain, start, end)
    return _punctuation(plain) - inside + 1


def _punctuation(text: str, start: int = 0, end: int | None = None) -> int:
    # A ":" counts twice: the key before it is a value too, and while an object with many distinct
    # keys is parsed, the parser's key cache and the dict's growing table hold about as much again
    # (attack round 13: a frame of one such object peaked at 1.19 times its count). A "[" or "{"
    # counts twice too: a list or dict holding a value costs about 100 bytes (object, GC header,
    # item array), not 64 (attack round 18: lists nested 50 deep parsed to 1.3 times their count).
    stop = len(text) if end is None else end
    return text.count(",", start, stop) + 2 * sum(text.count(mark, start, stop) for mark in ":[{")


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
