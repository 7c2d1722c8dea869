"""Is an answer founded on what the model's code showed, or a guess?

Small models answer with values they never saw: before any output, or after their code in the
same reply, before its output came back. The node asks a `Grounding` before it accepts an answer.

The rules, and why:
- An answer the code computed (`FINAL(count)`, `FINAL_VAR("names")`) is founded: the REPL made it.
  An answer the model typed is a literal and must have been shown by some code output first:
  `FINAL("80")`, `FINAL(40 * 2)`, `FINAL(str(80))`, or a name whose last assignment, in this step
  or an earlier one, was such a constant (`x = "80"` ... `FINAL(x)`). A name that code changed
  since (`count = 0` then `count += 1` in a loop) is computed.
- Shown means as a whole value: "80" is not shown by "4,698,280", nor "3" by "3.5". Numbers are
  compared by value, allowing the answer's own rounding ("33.4%" is shown by 0.33349). Only code
  outputs count: the context's description (its size, its preview) is not evidence, and the output
  of a step whose code itself wrote the literal (`print("80")`) is not evidence for it in that step.
- A short answer is founded when its numbers are shown (numbers the query holds are excused in a
  sentence, never as the bare answer) and, if it has none, when it is shown whole or its longest
  word that the query does not hold is. Yes/no answers need only some output. After the first
  step, long prose needs most of its numbers shown: it was written from what the model read.
- Refused every time it is given: a guess repeated is still a guess.
"""

from __future__ import annotations

import ast
import bisect
import re
from dataclasses import dataclass, field

from rlm.engine.parsing import parse_code

# Answers up to this size on one line are values (a number, an id, a name): the kind small models
# invent. Longer answers are prose written from what the model read.
SHORT_ANSWER_CHARS = 100

# A run of digits with its separators, standing alone: not inside a word ("x80") or a hyphenated
# code or date ("05" in "2024-05-02"). `_numbers` then reads "4,698,280" as one number and "1,2,3"
# as three, so "80" is never found inside "4,698,280", nor "3" inside "3.5" or "3.10.2".
_DIGITS = re.compile(r"(?<![\w.])(?<!\w-)-?\d+(?:[.,]\d+)*(?![\w]|-\w)")
_GROUPED = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_WORD = re.compile(r"[^\W\d_][\w.-]*[\w]|[^\W\d_]", re.UNICODE)
_YES_NO = {"yes", "no", "true", "false"}
# Builtins that turn constants into another constant: `str(80)` is still the model's typing.
_PURE_CALLS = {"str", "int", "float", "round", "abs", "len", "repr", "format"}


@dataclass(frozen=True)
class _Number:
    value: float
    decimals: int  # as written: "33.4" has 1
    percent: bool = False  # written as "33.4%": also shown by 0.334


@dataclass
class _Evidence:
    step: int
    output: str
    literals: frozenset[str]  # the constants the step's own code wrote
    numbers: list[float] = field(init=False)  # distinct, sorted: searched, never scanned
    literal_numbers: frozenset[float] = field(init=False)

    def __post_init__(self) -> None:
        self.numbers = sorted({n.value for n in _numbers(self.output)})
        self.literal_numbers = frozenset(n.value for literal in self.literals for n in _numbers(literal))

    def shows_number(self, number: _Number, step: int) -> bool:
        # what a step printed of its own typed constants is no evidence for an answer in that step
        if step == self.step and number.value in self.literal_numbers:
            return False
        # Only shown numbers within half a unit of the answer's last digit can round to it: found by
        # bisection. Comparing every number of an answer with every number shown made one check of
        # a hostile answer (40,000 numbers against 4,000 shown) take over 30 s on the host.
        half = 0.5 * 10.0**-number.decimals
        windows = [(number.value - half, number.value + half)]
        if number.percent:
            windows.append(((number.value - half) / 100, (number.value + half) / 100))
        for low, high in windows:
            at = bisect.bisect_left(self.numbers, low - abs(low) * 1e-9)
            while at < len(self.numbers) and self.numbers[at] <= high + abs(high) * 1e-9:
                if _rounds_to(self.numbers[at], number):
                    return True
                at += 1
        return False

    def shows_text(self, text: str, step: int) -> bool:
        if step == self.step and any(_contains_whole(literal, text) for literal in self.literals):
            return False
        return _contains_whole(self.output, text)


class Grounding:
    """What one node's code outputs have shown so far, and which names hold typed constants."""

    def __init__(self, query: str, enabled: bool = True) -> None:
        """`enabled=False` when the whole context was in the prompt: the model saw everything."""
        self.query = query
        self.enabled = enabled
        self._evidence: list[_Evidence] = []
        self._typed_names: set[str] = set()

    def saw(self, step: int, code: str, output: str) -> None:
        """Record a step: its output as evidence, and the names its code left holding constants."""
        tree = parse_code(code)
        if tree is not None:
            self._typed_names = _typed_after(tree, self._typed_names)
        if output.strip():
            self._evidence.append(_Evidence(step, output, frozenset(code_literals(code))))

    def final_is_literal(self, code: str) -> bool:
        """Whether the FINAL / FINAL_VAR in `code` (already passed to `saw`) hands over a typed constant."""
        tree = parse_code(code)
        if tree is None:
            return False
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.args):
                continue
            argument = node.args[0]
            if node.func.id == "FINAL":
                return _is_constant(argument) or (isinstance(argument, ast.Name) and self.holds_typed(argument.id))
            if node.func.id == "FINAL_VAR" and isinstance(argument, ast.Constant):
                return self.holds_typed(str(argument.value))
        return False

    def holds_typed(self, name: str) -> bool:
        return name in self._typed_names

    def engine_text(self, answer: str, markers: tuple[str, ...], always: tuple[str, ...] = ()) -> bool:
        """Whether the answer carries the engine's own text: `markers` that no output showed (so
        they were read off our messages, not found in `context`), or any of `always`."""
        if any(m in answer for m in always):
            return True
        return any(m in answer and not any(m in e.output for e in self._evidence) for m in markers)

    def unfounded(self, answer: str, literal: bool, step: int) -> bool:
        """Whether a `literal` answer (typed by the model, not computed) in `step` was shown by no output."""
        value = answer.strip()
        if not self.enabled or not literal or not value:
            return False
        if not self._evidence:
            return True
        if value.lower().rstrip(".!") in _YES_NO:
            return False
        numbers = _numbers(value)
        prose = len(value) > SHORT_ANSWER_CHARS or "\n" in value
        if numbers:
            bare = len(numbers) == 1 and not _WORD.search(value.replace("%", ""))
            asked = set() if bare else {n.value for n in _numbers(self.query)}
            claims = [n for n in numbers if n.value not in asked]
            shown = sum(self._shown_number(n, step) for n in claims)
            if prose and step > 1:
                return shown * 2 < len(claims)
            return shown < len(claims)
        if prose and step > 1:
            return False  # prose written from what the model read
        if self._shown(value, step):
            return False
        key = _key_word(value, self.query)
        return key is None or not self._shown(key, step)

    def _shown_number(self, number: _Number, step: int) -> bool:
        return any(e.shows_number(number, step) for e in self._evidence)

    def _shown(self, text: str, step: int) -> bool:
        return any(e.shows_text(text, step) for e in self._evidence)


def shows(text: str, answer: str) -> bool:
    """Whether `text`, were it an output, would found `answer` (the same rules as for outputs)."""
    grounding = Grounding("")
    grounding.saw(0, "", text)
    return not grounding.unfounded(answer, literal=True, step=1)


def code_literals(code: str) -> set[str]:
    """The constants a step's code writes as values: passed to a call or assigned to a name.

    A slice bound or an index (`context[:80]`) is not a value the model claims, so it is left out.
    """
    tree = parse_code(code)
    if tree is None:
        return set()
    found: set[str] = set()
    for node in ast.walk(tree):
        values: list[ast.expr] = []
        if isinstance(node, ast.Call):
            values = [*node.args, *(k.value for k in node.keywords)]
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)) and node.value is not None:
            values = [node.value]
        for value in values:
            found.update(_constants(value))
    return found


def _typed_after(tree: ast.Module, typed: set[str]) -> set[str]:
    """The names holding a typed constant after this code: set from one, and not changed since.

    Read in source order, which is execution order for straight-line code; a name bound in a loop
    or a branch (`count += 1`, `for best in ...`) counts as computed.
    """
    typed = set(typed)
    top_level = {id(statement) for statement in tree.body}  # `node in tree.body` was a scan per assignment
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            names = {t.id for t in node.targets if isinstance(t, ast.Name)}
            if _is_constant(node.value) and id(node) in top_level:
                typed |= names
            else:
                typed -= names
            typed -= {
                n.id
                for t in node.targets
                if not isinstance(t, ast.Name)
                for n in ast.walk(t)
                if isinstance(n, ast.Name)
            }
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign, ast.For, ast.AsyncFor, ast.comprehension, ast.NamedExpr)):
            target = node.target
            typed -= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
        elif isinstance(node, (ast.With, ast.AsyncWith)):
            typed -= {
                n.id
                for item in node.items
                if item.optional_vars
                for n in ast.walk(item.optional_vars)
                if isinstance(n, ast.Name)
            }
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            typed.discard(node.name)
        elif isinstance(node, ast.Global):
            typed -= set(node.names)
    return typed


def _is_constant(node: ast.expr) -> bool:
    """A value the model typed: a constant, or constants combined by operators or pure builtins."""
    if isinstance(node, ast.Constant):
        return True
    if isinstance(node, ast.JoinedStr):
        return all(isinstance(v, ast.Constant) or _is_constant(getattr(v, "value", v)) for v in node.values)
    if isinstance(node, ast.UnaryOp):
        return _is_constant(node.operand)
    if isinstance(node, ast.BinOp):
        return _is_constant(node.left) and _is_constant(node.right)
    if isinstance(node, (ast.Tuple, ast.List)):
        return bool(node.elts) and all(_is_constant(e) for e in node.elts)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _PURE_CALLS:
        return bool(node.args) and all(_is_constant(a) for a in node.args) and not node.keywords
    return False


def _constants(node: ast.expr) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, int, float)):
        return [str(node.value)]
    if isinstance(node, ast.JoinedStr):
        return [str(v.value) for v in node.values if isinstance(v, ast.Constant)]
    return []


def _contains_whole(haystack: str, text: str) -> bool:
    """`text` in `haystack` as a whole value: not glued to letters, digits or a decimal part."""
    pattern = r"(?<![\w])(?<![\d][.,])" + re.escape(text) + r"(?![\w])(?![.,]\d)"
    return re.search(pattern, haystack, re.IGNORECASE) is not None


def _numbers(text: str) -> list[_Number]:
    found: list[_Number] = []
    for match in _DIGITS.finditer(text):
        run = match.group()
        percent = text[match.end() : match.end() + 2].lstrip().startswith("%")
        parts = [run.replace(",", "")] if _GROUPED.fullmatch(run) else run.split(",")
        for part in parts:
            if part.count(".") <= 1 and part not in ("", "-"):  # "3.10.2" is a version, not a number
                decimals = len(part.split(".")[1]) if "." in part else 0
                found.append(_Number(float(part), decimals, percent))
    return found


def _rounds_to(shown: float, answer: _Number) -> bool:
    """Whether `shown`, rounded as the answer is written (a percentage also from a fraction), is it."""
    candidates = (shown, shown * 100) if answer.percent else (shown,)
    return any(round(candidate, answer.decimals) == answer.value for candidate in candidates)


def _key_word(value: str, query: str) -> str | None:
    """The longest word of an answer that the query does not already hold (else its longest word)."""
    asked = {w.lower() for w in _WORD.findall(query)}
    words = [w.strip(".") for w in _WORD.findall(value)]
    new = [w for w in words if w.lower() not in asked]
    return max(new or words, key=len) if words else None
