"""`.gitignore` lines and `--include`/`--exclude` globs, matched in time polynomial in the pattern and the path.

`context_files` uses it to walk a `--context` folder, which is often someone else's (a cloned
repository, an unpacked archive), so its `.gitignore` lines are a stranger's input.

Why not pathspec: it turns each line into a Python regular expression, and Python's `re` backtracks.
A line such as `*a*a*a*a*a*a*a*a*a*a*b` against a 40-character file name took 21 s, three more stars
minutes (attack round 21, hole 4). pathspec uses google-re2 (a linear engine) only where that compiled
package is installed, so it guarantees nothing by itself. Here a segment's glob is split at its stars
into fixed-width chunks found left to right (leftmost is exact for chunks between stars): O(glob x
name). A line with `/` is an automaton over path names whose states the walk carries down the
folders: O(pattern) a name, whatever the depth.

Semantics are git's (gitignore(5)): `#` comments, trailing spaces unless escaped, `!` re-includes,
a trailing `/` matches folders only, a `/` at the start or in the middle anchors the pattern to the
`.gitignore`'s folder (else it matches a name at any depth), `*` `?` `[...]` stay within a name,
`**/` matches any folders, `/**` everything inside, `/**/` zero or more folders, and the last
matching line wins.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

_STAR = object()  # a `*` (or a run of them) inside one name
_ANY_CHAR = "(?s:.)"  # `?`: names never hold `/`


@dataclass(frozen=True)
class _Chunk:
    """Glob tokens between two stars: each matches exactly one character, so the chunk has a fixed width."""

    width: int
    literal: str | None  # the text when the chunk has no `?` or `[...]`: str.find / startswith
    regex: re.Pattern[str] | None  # else a regular expression without quantifiers: no backtracking

    def at(self, name: str, position: int) -> bool:
        if self.literal is not None:
            return name.startswith(self.literal, position)
        assert self.regex is not None
        return self.regex.match(name, position) is not None

    def find(self, name: str, start: int, end: int) -> int:
        """The leftmost position >= start where the chunk fits wholly before `end`, or -1."""
        if self.literal is not None:
            return name.find(self.literal, start, end)
        assert self.regex is not None
        found = self.regex.search(name, start, end)
        return -1 if found is None else found.start()


class _Glob:
    """One name's glob (`*.py`, `test_?.txt`, `[!a-c]*`), matched in O(pattern x name)."""

    __slots__ = ("_chunks", "_starred", "_width")

    def __init__(self, text: str) -> None:
        pieces: list[list[str]] = [[]]  # regex pieces of each chunk, one per character
        literals: list[list[str | None]] = [[]]  # the character, or None for `?` and classes
        for token in _tokens(text):
            if token is _STAR:
                if pieces[-1] or len(pieces) == 1:
                    pieces.append([])
                    literals.append([])
                continue
            assert isinstance(token, tuple)
            piece, char = token
            pieces[-1].append(piece)
            literals[-1].append(char)
        self._starred = len(pieces) > 1
        self._chunks = [_chunk(p, c) for p, c in zip(pieces, literals, strict=True)]
        self._width = sum(chunk.width for chunk in self._chunks)

    def match(self, name: str) -> bool:
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


def _chunk(pieces: list[str], chars: list[str | None]) -> _Chunk:
    if all(char is not None for char in chars):
        return _Chunk(len(chars), "".join(char for char in chars if char is not None), None)
    return _Chunk(len(chars), None, re.compile("".join(pieces)))


def _tokens(text: str) -> Iterable[object]:
    """`_STAR`, or (regex piece, literal character or None) for each one-character token of a glob."""
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            yield re.escape(text[i + 1]), text[i + 1]
            i += 2
        elif char == "*":
            yield _STAR
            i += 1
        elif char == "?":
            yield _ANY_CHAR, None
            i += 1
        elif char == "[" and (parsed := _char_class(text, i)) is not None:
            piece, i = parsed
            yield piece, None
        else:
            yield re.escape(char), char
            i += 1


def _char_class(text: str, start: int) -> tuple[str, int] | None:
    """The regex for the `[...]` at `start` and the index after it; None when it is not closed (a literal `[`)."""
    i = start + 1
    negated = i < len(text) and text[i] in "!^"
    i += negated
    ranges: list[tuple[str, str]] = []
    first = True
    while i < len(text) and (text[i] != "]" or first):
        first = False
        low = text[i + 1] if text[i] == "\\" and i + 1 < len(text) else text[i]
        i += 2 if text[i] == "\\" and i + 1 < len(text) else 1
        high = low
        if i + 1 < len(text) and text[i] == "-" and text[i + 1] != "]":
            high = text[i + 2] if text[i + 1] == "\\" and i + 2 < len(text) else text[i + 1]
            i += 3 if text[i + 1] == "\\" and i + 2 < len(text) else 2
        if low <= high:
            ranges.append((low, high))
    if i >= len(text):
        return None
    body = "".join(_escape(low) if low == high else f"{_escape(low)}-{_escape(high)}" for low, high in ranges)
    if not body:
        return (_ANY_CHAR if negated else "(?!)"), i + 1
    return f"[{'^' if negated else ''}{body}]", i + 1


def _escape(char: str) -> str:
    return f"\\U{ord(char):08x}"


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

    def __init__(self, line: str, negated: bool, dir_only: bool) -> None:
        self.negated, self._dir_only = negated, dir_only
        self._glob: _Glob | None = None
        self._segments: tuple[_Glob | None, ...] | None = None
        if "/" not in line:
            self._glob = _Glob(line)
            self.weight = 1
            return
        segments: list[_Glob | None] = []
        for part in (part for part in line.split("/") if part):
            if part != "**":
                segments.append(_Glob(part))
            elif not segments or segments[-1] is not _GLOBSTAR:
                segments.append(_GLOBSTAR)
        if segments and segments[-1] is _GLOBSTAR:  # `abc/**`: what is inside abc, not abc itself
            segments[-1:] = [_Glob("*"), _GLOBSTAR]
        self._segments = tuple(segments)
        self.weight = len(segments)
        # Positions from which one more name can end the match: a name is checked only at those.
        self._last = frozenset(
            position
            for position, glob in enumerate(segments)
            if len(segments) in self._closure({position if glob is _GLOBSTAR else position + 1})
        )

    def start(self) -> _RuleState:
        """The state at the rule's own folder."""
        return (None if self._segments is None else self._closure({0})), False

    def enter(self, state: _RuleState, name: str, contents: bool) -> _RuleState:
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

    def matches(self, state: _RuleState, name: str, is_dir: bool) -> bool:
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

    def _step(self, positions: frozenset[int], name: str) -> frozenset[int]:
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


def _rule(line: str) -> _Rule | None:
    """The rule of one `.gitignore` line or glob; None for blanks and comments."""
    if not line or line.startswith("#"):
        return None
    while line.endswith(" ") and not line.endswith("\\ "):
        line = line[:-1]
    negated = line.startswith("!")
    line = line[negated:]
    dir_only = line.endswith("/")
    line = line.rstrip("/")
    if not line:
        return None
    return _Rule(line, negated, dir_only)  # a `/` at the start (`/build`) or inside anchors the line


class _Rules:
    """Lines in order, and the state of each at a folder (a tuple, one entry per line)."""

    def __init__(self, lines: Iterable[str]) -> None:
        self._rules = [rule for rule in map(_rule, lines) if rule is not None]
        self.weight = sum(rule.weight for rule in self._rules)  # the work of matching one name

    def __bool__(self) -> bool:
        return bool(self._rules)

    def start(self) -> State:
        return tuple(rule.start() for rule in self._rules)

    _contents = True  # whether a line matching a folder matches what is inside it

    def enter(self, state: State, name: str) -> State:
        contents = self._contents
        return tuple(rule.enter(each, name, contents) for rule, each in zip(self._rules, state, strict=True))


class IgnoreFile(_Rules):
    """The lines of one `.gitignore`, for the names in its folder and below (`start()` is its folder's state)."""

    _contents = False  # what is in an ignored folder is never reached

    def decides(self, state: State, name: str, is_dir: bool) -> bool | None:
        """True (ignored) or False (re-included) by the last line matching `name`, None when none does.

        Only the name itself counts: what is in an ignored folder is never reached (git's rule).
        """
        for rule, each in zip(reversed(self._rules), reversed(state), strict=True):
            if rule.matches(each, name, is_dir):
                return not rule.negated
        return None


class Globs(_Rules):
    """`--include`/`--exclude` globs, gitignore syntax, from the folder read (`start()` is its state).

    As pathspec's: a glob matching a folder also matches what is inside it; the last matching glob wins.
    """

    def match(self, state: State, name: str, is_dir: bool) -> bool:
        for rule, each in zip(reversed(self._rules), reversed(state), strict=True):
            if each[1] or rule.matches(each, name, is_dir):
                return not rule.negated
        return False
