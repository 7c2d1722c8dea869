"""One name's glob, as git's wildmatch.c means it, byte for byte and without backtracking (for rlm/gitignore.py).

A glob is split at its stars into fixed-width chunks found left to right (leftmost is exact for
chunks between stars): a literal chunk by bytes.find, one holding `?` or `[...]` by a quantifier-free
regex search, O(name x its width), which `Glob.weight` charges. Parsing is one pass: `[...]` is
parsed as wildmatch.c parses it (`]` first is a member, `a-z` ranges, a reversed range adds nothing,
`\\` escapes, `[:digit:]` and the other POSIX classes as ASCII sets with git's ctype), and an unclosed
`[` or an unknown class raises Unmatchable: git's WM_ABORT_ALL, the line matches nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

_STAR = object()  # a `*` (or a run of them) inside one name
_ANY = None  # `?`: any one byte (names never hold `/`)
_ANY_BYTE = b"(?s:.)"


def as_bytes(text: str | bytes) -> bytes:
    """A name or line as git sees it: surrogate escapes (undecodable bytes) become their bytes."""
    if isinstance(text, bytes):
        return text
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate no file system gave: any bytes, as long as no exception
        return text.encode("utf-8", "surrogatepass")


class Unmatchable(Exception):
    """An unclosed `[` or an unknown `[:class:]`: git's wildmatch aborts, the line matches nothing."""


def _range(low: int, high: int) -> frozenset[int]:
    return frozenset(range(low, high + 1))


_LOWER, _UPPER, _DIGIT = _range(0x61, 0x7A), _range(0x41, 0x5A), _range(0x30, 0x39)
_GRAPH = _range(0x21, 0x7E)
_POSIX = {  # wildmatch.c's, with git's ctype (sane_ctype.h): ASCII only
    b"alnum": _LOWER | _UPPER | _DIGIT,
    b"alpha": _LOWER | _UPPER,
    b"blank": frozenset(b" \t"),
    b"cntrl": _range(0, 0x1F) | {0x7F},
    b"digit": _DIGIT,
    b"graph": _GRAPH,
    b"lower": _LOWER,
    b"print": _range(0x20, 0x7E),
    b"punct": _GRAPH - _LOWER - _UPPER - _DIGIT,
    b"space": frozenset(b" \t\n\r"),
    b"upper": _UPPER,
    b"xdigit": _DIGIT | _range(0x41, 0x46) | _range(0x61, 0x66),
}


@dataclass(frozen=True)
class _Chunk:
    """Glob tokens between two stars: each matches exactly one byte, so the chunk has a fixed width."""

    width: int
    literal: bytes | None  # the text when the chunk has no `?` or `[...]`: bytes.find / startswith
    regex: re.Pattern[bytes] | None  # else a regular expression without quantifiers: no backtracking

    def at(self, name: bytes, position: int) -> bool:
        if self.literal is not None:
            return name.startswith(self.literal, position)
        assert self.regex is not None
        return self.regex.match(name, position) is not None

    def find(self, name: bytes, start: int, end: int) -> int:
        """The leftmost position >= start where the chunk fits wholly before `end`, or -1."""
        if self.literal is not None:
            return name.find(self.literal, start, end)
        assert self.regex is not None
        found = self.regex.search(name, start, end)
        return -1 if found is None else found.start()


class Glob:
    """One name's glob (`*.py`, `test_?.txt`, `[!a-c]*`), matched in O(name x the width of its `?`/`[...]` chunks)."""

    __slots__ = ("_chunks", "_starred", "_width", "weight")

    def __init__(self, text: bytes) -> None:
        tokens: list[list[int | frozenset[int] | None]] = [[]]  # per chunk: a byte, a class, or _ANY
        for token in _tokens(text):
            if token is _STAR:
                if tokens[-1] or len(tokens) == 1:
                    tokens.append([])
                continue
            tokens[-1].append(token)  # type: ignore[arg-type]
        self._starred = len(tokens) > 1
        self._chunks = [_chunk(each) for each in tokens]
        self._width = sum(chunk.width for chunk in self._chunks)
        self.weight = 2 * sum(chunk.width for chunk in self._chunks if chunk.regex is not None)

    def match(self, name: bytes) -> bool:
        chunks = self._chunks
        if not self._starred:
            return len(name) == self._width and chunks[0].at(name, 0)
        if len(name) < self._width:
            return False
        first, last = chunks[0], chunks[-1]
        end = len(name) - last.width
        if not first.at(name, 0) or not last.at(name, end):
            return False
        position = first.width
        for chunk in chunks[1:-1]:
            found = chunk.find(name, position, end)
            if found < 0:
                return False
            position = found + chunk.width
        return True


def _chunk(tokens: list[int | frozenset[int] | None]) -> _Chunk:
    if all(isinstance(token, int) for token in tokens):
        return _Chunk(len(tokens), bytes(tokens), None)  # type: ignore[arg-type]
    pieces = [_piece(token) for token in tokens]
    return _Chunk(len(tokens), None, re.compile(b"".join(pieces)))


def _piece(token: int | frozenset[int] | None) -> bytes:
    if token is _ANY:
        return _ANY_BYTE
    if isinstance(token, int):
        return b"\\x%02x" % token
    if not token:
        return b"(?!)"
    if len(token) == 256:
        return _ANY_BYTE
    return b"[" + b"".join(b"\\x%02x" % byte for byte in sorted(token)) + b"]"


def _tokens(text: bytes) -> Iterator[object]:
    """`_STAR`, or a byte (int), a class (frozenset) or `_ANY` for each one-byte token; one pass over `text`."""
    i, end = 0, len(text)
    while i < end:
        char = text[i]
        if char == 0x5C and i + 1 < end:  # `\x`: x itself
            yield text[i + 1]
            i += 2
        elif char == 0x2A:
            yield _STAR
            i += 1
        elif char == 0x3F:
            yield _ANY
            i += 1
        elif char == 0x5B:
            members, i = char_class(text, i)
            yield members
        else:
            yield char
            i += 1


def _escaped(text: bytes, backslash: int) -> tuple[int, int]:
    """The byte a `\\` at `backslash` escapes in a `[...]`, and its index; Unmatchable at the line's end."""
    if backslash + 1 >= len(text):
        raise Unmatchable
    return text[backslash + 1], backslash + 1


def char_class(text: bytes, start: int) -> tuple[frozenset[int], int]:
    """The bytes the `[...]` at `start` matches and the index after it, as wildmatch.c parses it.

    _Unmatchable when it is not closed or names an unknown `[:class:]`. Linear: the `]` a `[:` looks
    for is found once and reused.
    """
    end = len(text)
    p = start + 1
    negated = p < end and text[p] in b"!^"
    p += negated
    members: set[int] = set()
    previous = -1
    close = -1  # the next `]` at or after a `[:`'s name, once looked for
    while True:
        if p >= end:
            raise Unmatchable
        char = text[p]
        if char == 0x5C:
            char, p = _escaped(text, p)
            members.add(char)
        elif char == 0x2D and previous >= 0 and p + 1 < end and text[p + 1] != 0x5D:
            p += 1
            char = text[p]
            if char == 0x5C:
                char, p = _escaped(text, p)
            members.update(range(previous, char + 1))  # a reversed range adds nothing
            char = -1
        elif char == 0x5B and p + 1 < end and text[p + 1] == 0x3A:
            if close < p + 2:
                close = text.find(b"]", p + 2)
                if close < 0:
                    raise Unmatchable
            if close == p + 2 or text[close - 1] != 0x3A:  # no `:]`: the `[` is a member, go on at the `:`
                members.add(char)
            else:
                named = _POSIX.get(text[p + 2 : close - 1])
                if named is None:
                    raise Unmatchable
                members.update(named)
                p, char = close, -1
        else:
            members.add(char)
        previous = char
        p += 1
        if p >= end:
            raise Unmatchable
        if text[p] == 0x5D:
            break
    found = frozenset(members)
    return (frozenset(range(256)) - found if negated else found), p + 1
