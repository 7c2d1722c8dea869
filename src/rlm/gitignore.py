"""`.gitignore` lines and `--include`/`--exclude` globs, matched in time linear in the pattern and the path.

`context_folder` uses it to walk a `--context` folder, which is often someone else's (a cloned
repository, an unpacked archive), so its `.gitignore` lines are a stranger's input.

Why not pathspec: it turns each line into a Python regular expression, and Python's `re` backtracks.
A line such as `*a*a*a*a*a*a*a*a*a*a*b` against a 40-character file name took 21 s, three more stars
minutes (attack round 21, hole 4). pathspec uses google-re2 (a linear engine) only where that compiled
package is installed, so it guarantees nothing by itself. Here each name's glob is matched by
rlm/wildmatch.py (fixed-width chunks between stars, found left to right), and a line with `/` is an
automaton over path names whose states the walk carries down the folders: O(pattern) a name,
whatever the depth. Parsing is one pass (an unclosed `[` ends the line, as in git).

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

from collections.abc import Iterable

from rlm.wildmatch import Glob, Unmatchable, as_bytes, char_class

__all__ = ["Globs", "IgnoreFile", "State", "as_bytes", "parse_gitignore"]

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
        self._glob: Glob | None = None
        self._segments: tuple[Glob | None, ...] | None = None
        if b"/" not in line:
            self._glob = Glob(line)
            self.weight = 1 + self._glob.weight
            return
        segments: list[Glob | None] = []
        for part in (part for part in _split_at_slashes(line) if part):
            if part != b"**":
                segments.append(Glob(part))
            elif not segments or segments[-1] is not _GLOBSTAR:
                segments.append(_GLOBSTAR)
        if segments and segments[-1] is _GLOBSTAR:  # `abc/**`: what is inside abc, not abc itself
            segments[-1:] = [Glob(b"*"), _GLOBSTAR]
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
            i = char_class(line, i)[1]  # linear: each class is parsed once more in its Glob
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
    except Unmatchable:
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


class FileGlobs(Globs):
    """Globs that match a path as `glob.glob` does: only the names they reach themselves. A glob
    matching a folder does not take what is inside it (`ctx/*` is not `ctx/sub/big.txt`: a batch
    item's context_glob read a 200 MB file below the files it named, attack round 27)."""

    _contents = False
