"""Is an answer founded on what the model's code showed, or a guess?

Small models answer with values they never saw: before any output, or after their code in the
same reply, before its output came back. The node asks `Grounding.unfounded(...)` before it
accepts an answer the model wrote out literally.

The rules, and why:
- An answer the code computed (`FINAL(count)`, `FINAL_VAR("names")`) is founded: the REPL made it.
  An answer the model typed (`FINAL("80")`, or `x = "80"` then `FINAL(x)`) is a literal and must
  have been shown by some code output first.
- Shown means as a whole value: "80" is not shown by "4,698,280", nor "3" by "3.5". Numbers are
  compared by value, so "1,234" is shown by "1234". Only code outputs count: the context's
  description (its size, its preview) is not evidence, and the output of a step whose code itself
  wrote the literal (`print("80")`) is not evidence for that literal.
- A sentence is founded when its numbers are shown and, if it has none, when it is shown whole or
  its longest word that is not in the query is (the label in "The most frequent label is x").
  After the first step a long prose answer is checked for its numbers only: it was written from
  what the model read.
- Refused every time it is given: a guess repeated is still a guess.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

# Answers up to this size on one line are values (a number, an id, a name): the kind small models
# invent. Longer answers are prose written from what the model read.
SHORT_ANSWER_CHARS = 100

# A run of digits with its separators, standing alone: not inside a word ("x80") or a hyphenated
# code or date ("05" in "2024-05-02"). `_split_numbers` then reads "4,698,280" as one number and
# "1,2,3" as three, so "80" is never found inside "4,698,280", nor "3" inside "3.5" or "3.10.2".
_DIGITS = re.compile(r"(?<![\w.])(?<!\w-)-?\d+(?:[.,]\d+)*(?![\w]|-\w)")
_GROUPED = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_WORD = re.compile(r"[^\W\d_][\w.-]*[\w]|[^\W\d_]", re.UNICODE)


@dataclass
class _Evidence:
    step: int
    output: str
    literals: frozenset[str]  # the constants the step's own code wrote
    numbers: frozenset[float] = field(init=False)
    literal_numbers: frozenset[float] = field(init=False)

    def __post_init__(self) -> None:
        self.numbers = frozenset(_numbers(self.output))
        self.literal_numbers = frozenset(n for literal in self.literals for n in _numbers(literal))

    def shows_number(self, number: float, step: int) -> bool:
        # what a step printed of its own typed constants is no evidence for an answer in that step
        return number in self.numbers and not (step == self.step and number in self.literal_numbers)

    def shows_text(self, text: str, step: int) -> bool:
        if step == self.step and any(_contains_whole(literal, text) for literal in self.literals):
            return False
        return _contains_whole(self.output, text)


class Grounding:
    """What one node's code outputs have shown so far."""

    def __init__(self, query: str, enabled: bool = True) -> None:
        """`enabled=False` when the whole context was in the prompt: the model saw everything."""
        self.query = query
        self.enabled = enabled
        self._evidence: list[_Evidence] = []

    def saw(self, step: int, code: str, output: str) -> None:
        if output.strip():
            self._evidence.append(_Evidence(step, output, frozenset(code_literals(code))))

    def unfounded(self, answer: str, literal: bool, step: int) -> bool:
        """Whether a `literal` answer (typed by the model, not computed) in `step` was shown by no output."""
        value = answer.strip()
        if not self.enabled or not literal or not value:
            return False
        numbers = _numbers(value)
        if numbers:
            return not all(any(e.shows_number(n, step) for e in self._evidence) for n in numbers)
        if (len(value) > SHORT_ANSWER_CHARS or "\n" in value) and step > 1:
            return False  # prose written from what the model read
        if self._shown(value, step):
            return False
        key = _key_word(value, self.query)
        return key is None or not self._shown(key, step)

    def _shown(self, text: str, step: int) -> bool:
        return any(e.shows_text(text, step) for e in self._evidence)


def code_literals(code: str) -> set[str]:
    """The constants a step's code writes as values: passed to a call or assigned to a name.

    A slice bound or an index (`context[:80]`) is not a value the model claims, so it is left out.
    """
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
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


def literal_final(code: str) -> bool:
    """Whether the code's FINAL / FINAL_VAR answer is a constant the model typed.

    `FINAL("80")`, `FINAL(f"{80}")`, or `x = "80"` earlier in the block then `FINAL(x)`. An answer
    built from anything else (a computed variable, a call) is the REPL's, not the model's.
    """
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return False
    typed: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and _is_constant(node.value):
            typed.update(t.id for t in node.targets if isinstance(t, ast.Name))
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.args):
            continue
        argument = node.args[0]
        if node.func.id == "FINAL":
            return _is_constant(argument) or (isinstance(argument, ast.Name) and argument.id in typed)
        if node.func.id == "FINAL_VAR" and isinstance(argument, ast.Constant):
            return str(argument.value) in typed
    return False


def _is_constant(node: ast.expr) -> bool:
    if isinstance(node, ast.Constant):
        return True
    if isinstance(node, ast.JoinedStr):
        return all(isinstance(v, ast.Constant) or _is_constant(getattr(v, "value", v)) for v in node.values)
    if isinstance(node, ast.UnaryOp):
        return _is_constant(node.operand)
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


def _numbers(text: str) -> list[float]:
    found: list[float] = []
    for run in _DIGITS.findall(text):
        if _GROUPED.fullmatch(run):
            found.append(float(run.replace(",", "")))
            continue
        for part in run.split(","):
            if part.count(".") <= 1 and part not in ("", "-"):  # "3.10.2" is a version, not a number
                found.append(float(part))
    return found


def _key_word(value: str, query: str) -> str | None:
    """The longest word of an answer that the query does not already hold (else its longest word)."""
    asked = {w.lower() for w in _WORD.findall(query)}
    words = [w.strip(".") for w in _WORD.findall(value)]
    new = [w for w in words if w.lower() not in asked]
    return max(new or words, key=len) if words else None
