"""`.gitignore` lines and `--include`/`--exclude` globs, matched in time linear in the pattern and the path.

`context_files` uses it to walk a `--context` folder, which is often someone else's (a cloned
repository, an unpacked archive), so its `.gitignore` lines are a stranger's input.

Why not pathspec: it turns each line into a Python regular expression, and Python's `re` backtracks.
A line such as `*a*a*a*a*a*a*a*a*a*a*b` against a 40-character file name took 21 s, three more stars
minutes (attack round 21, hole 4). pathspec uses google-re2 (a linear engine) only where that compiled
package is installed, so it guarantees nothing by itself. Here a segment's glob is split at its stars
into fixed-width chunks found left to right (leftmost is exact for chunks between stars). A line with
`/` is an automaton over path names whose states the walk carries down the folders: O(pattern) a
name, whatever the depth. Parsing is one pass (an unclosed `[` ends the line, as in git).

Each line has a `weight`, the work of matching one name against it (1, plus its length / 32, plus
twice the width of its chunks holding `?` or `[...]`, which a regex search tries at every position),
and `parse_gitignore` stops as soon as a file's weight passes the budget it is given: no file costs
more than its budget to parse or to match, whatever its size.

Semantics are git's (gitignore(5), wildmatch.c), byte for byte: lines and names are bytes (a name
from the file system is `os.fsencode`d: surrogate escapes become the bytes they stand for), so `?`
and `[...]` take one byte, `[:digit:]` and the other POSIX classes are ASCII sets, `#` comments,
trailing spaces unless escaped, `!` re-includes, a trailing `/` matches folders only, a `/` at the
start or in the middle anchors the pattern to the `.gitignore`'s folder (else it matches a name at
any depth), `*` `?` `[...]` stay within a name, `**/` matches any folders, `/**` everything inside,
`/**/` zero or more folders, and the last matching line wins. A line with an unclosed `[` or an
unknown `[:class:]` matches nothing (git's WM_ABORT_ALL). A file's lines are split at `\\n` only
(one trailing `\\r` dropped), a leading UTF-8 byte-order mark is skipped, and a line ends at a NUL.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
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


class _Unmatchable(Exception):
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


class _Glob:
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
            members, i = _char_class(text, i)
            yield members
        else:
            yield char
            i += 1


def _char_class(text: bytes, start: int) -> tuple[frozenset[int], int]:
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
            raise _Unmatchable
        char = text[p]
        if char == 0x5C:
            p += 1
            if p >= end:
                raise _Unmatchable
            char = text[p]
            members.add(char)
        elif char == 0x2D and previous >= 0 and p + 1 < end and text[p + 1] != 0x5D:
            p += 1
            char = text[p]
            if char == 0x5C:
                p += 1
                if p >= end:
                    raise _Unmatchable
                char = text[p]
            members.update(range(previous, char + 1))  # a reversed range adds nothing
            char = -1
        elif char == 0x5B and p + 1 < end and text[p + 1] == 0x3A:
            if close < p + 2:
                close = text.find(b"]", p + 2)
                if close < 0:
                    raise _Unmatchable
            if close == p + 2 or text[close - 1] != 0x3A:  # no `:]`: the `[` is a member, go on at the `:`
                members.add(char)
            else:
                named = _POSIX.get(text[p + 2 : close - 1])
                if named is None:
                    raise _Unmatchable
                members.update(named)
                p, char = close, -1
        else:
            members.add(char)
        previous = char
        p += 1
        if p >= end:
            raise _Unmatchable
        if text[p] == 0x5D:
            break
    found = frozenset(members)
    return (frozenset(range(256)) - found if negated else found), p + 1


_GLOBSTAR = None  # a whole `**` segment: zero or more names

# What a rule knows at a folder: the positions in its segments reachable after the names from its
# `.gitignore`'s folder down to here (None for an unanchored rule), and whether it matched one of
# those folders (a glob matching a folder matches what is inside it).
_RuleState = tuple[frozenset[int] | None, bool]
State = tuple[_RuleState, ...]  # of all the lines of a `.gitignore` or of the globs, at one folder


class _Rule:
    """One line: a name glob (unanchored), or name globs and `**` matched as an automaton over path names.

    The walk carries each rule's reachable positions down the folders (Thompson's simulation of the
    pattern's automaton), so matching a name costs O(pattern), whatever the depth: no backtracking.
    """

    __slots__ = ("_dir_only", "_glob", "_last", "_segments", "negated", "weight")

    def __init__(self, line: bytes, negated: bool, dir_only: bool) -> None:
        self.negated, self._dir_only = negated, dir_only
        self._glob: _Glob | None = None
        self._segments: tuple[_Glob | None, ...] | None = None
        if b"/" not in line:
            self._glob = _Glob(line)
            self.weight = 1 + self._glob.weight
            return
        segments: list[_Glob | None] = []
        for part in (part for part in _split_at_slashes(line) if part):
            if part != b"**":
                segments.append(_Glob(part))
            elif not segments or segments[-1] is not _GLOBSTAR:
                segments.append(_GLOBSTAR)
        if segments and segments[-1] is _GLOBSTAR:  # `abc/**`: what is inside abc, not abc itself
            segments[-1:] = [_Glob(b"*"), _GLOBSTAR]
        self._segments = tuple(segments)
        self.weight = len(segments) + sum(glob.weight for glob in segments if glob is not None)
        # Positions from which one more name can end the match: a name is checked only at those.
        self._last = frozenset(
            position
            for position, glob in enumerate(segments)
            if len(segments) in self._closure({position if glob is _GLOBSTAR else position + 1})
        )

    def start(self) -> _RuleState:
        """The state at the rule's own folder."""
        return (None if self._segments is None else self._closure({0})), False

    def enter(self, state: _RuleState, name: bytes, contents: bool) -> _RuleState:
        """The state inside the subfolder `name`; `contents`: whether to track a match of the folder itself."""
        positions, contains = state
        if positions is None:
            if not contents or contains:
                return state
            return None, self._glob is not None and self._glob.match(name)
        if not positions:
            return state  # the line can match nothing below
        after = self._step(positions, name)
        return after, contains or (contents and self._segments is not None and len(self._segments) in after)

    def matches(self, state: _RuleState, name: bytes, is_dir: bool) -> bool:
        """Whether the rule matches `name` in the folder of `state` itself (a folder when `is_dir`)."""
        if self._dir_only and not is_dir:
            return False
        positions = state[0]
        if positions is None:
            return self._glob is not None and self._glob.match(name)
        assert self._segments is not None
        for position in positions & self._last:
            glob = self._segments[position]
            if glob is _GLOBSTAR or glob.match(name):
                return True
        return False

    def _step(self, positions: frozenset[int], name: bytes) -> frozenset[int]:
        segments = self._segments
        assert segments is not None
        after = set()
        for position in positions:
            if position < len(segments):
                glob = segments[position]
                if glob is _GLOBSTAR:
                    after.add(position)  # `**` takes this name too
                elif glob.match(name):
                    after.add(position + 1)
        return self._closure(after)

    def _closure(self, positions: Iterable[int]) -> frozenset[int]:
        """`positions` and those past the `**` at them (which may take no name)."""
        segments = self._segments
        assert segments is not None
        reached = set(positions)
        for position in list(reached):
            while position < len(segments) and segments[position] is _GLOBSTAR:
                position += 1
                reached.add(position)
        return frozenset(reached)


def _split_at_slashes(line: bytes) -> list[bytes]:
    """The names of a line with `/`: split at each `/` outside a `[...]` (git's `e[b/c]d` is one name's glob)."""
    parts, begin, i = [], 0, 0
    while i < len(line):
        char = line[i]
        if char == 0x5C:
            i += 2
        elif char == 0x5B:
            i = _char_class(line, i)[1]  # linear: each class is parsed once more in its _Glob
        elif char == 0x2F:
            parts.append(line[begin:i])
            begin = i = i + 1
        else:
            i += 1
    parts.append(line[begin:])
    return parts


def line_weight(line: bytes) -> int:
    """What a line costs before it is parsed: parsing is linear in it, and a literal is found in C."""
    return 1 + len(line) // 32


def _rule(line: str | bytes) -> _Rule | None:
    """The rule of one `.gitignore` line or glob; None for blanks, comments and lines that match nothing."""
    text = as_bytes(line).split(b"\0", 1)[0]  # git's lines are C strings
    if not text or text.startswith(b"#"):
        return None
    while text.endswith(b" ") and not text.endswith(b"\\ "):
        text = text[:-1]
    negated = text.startswith(b"!")
    text = text[negated:]
    dir_only = text.endswith(b"/")
    text = text.rstrip(b"/")
    if not text:
        return None
    try:
        return _Rule(text, negated, dir_only)  # a `/` at the start (`/build`) or inside anchors the line
    except _Unmatchable:
        return None


class _Rules:
    """Lines in order, and the state of each at a folder (a tuple, one entry per line)."""

    def __init__(self, lines: Iterable[str | bytes]) -> None:
        self._rules = [rule for rule in map(_rule, lines) if rule is not None]
        self.weight = sum(rule.weight for rule in self._rules)  # the work of matching one name

    def __bool__(self) -> bool:
        return bool(self._rules)

    def start(self) -> State:
        return tuple(rule.start() for rule in self._rules)

    _contents = True  # whether a line matching a folder matches what is inside it

    def enter(self, state: State, name: str | bytes) -> State:
        contents, raw = self._contents, as_bytes(name)
        return tuple(rule.enter(each, raw, contents) for rule, each in zip(self._rules, state, strict=True))


class IgnoreFile(_Rules):
    """The lines of one `.gitignore`, for the names in its folder and below (`start()` is its folder's state)."""

    _contents = False  # what is in an ignored folder is never reached

    def decides(self, state: State, name: str | bytes, is_dir: bool) -> bool | None:
        """True (ignored) or False (re-included) by the last line matching `name`, None when none does.

        Only the name itself counts: what is in an ignored folder is never reached (git's rule).
        """
        raw = as_bytes(name)
        for rule, each in zip(reversed(self._rules), reversed(state), strict=True):
            if rule.matches(each, raw, is_dir):
                return not rule.negated
        return None


def parse_gitignore(data: bytes, budget: int) -> IgnoreFile | None:
    """The rules of a `.gitignore`'s bytes, or None once their weight passes `budget` (parsing stops there).

    As git reads it: a UTF-8 byte-order mark skipped, lines split at `\\n` only, one `\\r` ending a line
    dropped. Blank and comment lines weigh a byte in 256 (the file is still split and walked).
    """
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if len(data) // 256 > budget:
        return None
    lines: list[bytes] = []
    spent = len(data) // 256
    for line in data.split(b"\n"):
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line or line.startswith(b"#"):
            continue
        spent += line_weight(line)
        if spent > budget:
            return None
        lines.append(line)
    rules = IgnoreFile(())
    for line in lines:
        rule = _rule(line)
        if rule is not None:
            spent += rule.weight - 1  # its regex chunks (the length is paid already)
            if spent > budget:
                return None
            rules._rules.append(rule)
    rules.weight = spent
    return rules


class Globs(_Rules):
    """`--include`/`--exclude` globs, gitignore syntax, from the folder read (`start()` is its state).

    As pathspec's: a glob matching a folder also matches what is inside it; the last matching glob wins.
    """

    def match(self, state: State, name: str | bytes, is_dir: bool) -> bool:
        raw = as_bytes(name)
        for rule, each in zip(reversed(self._rules), reversed(state), strict=True):
            if each[1] or rule.matches(each, raw, is_dir):
                return not rule.negated
        return False
