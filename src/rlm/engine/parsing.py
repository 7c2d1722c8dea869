"""Reading a model reply: its code blocks, and a FINAL / FINAL_VAR written as text.

Pure functions, called by the node loop. FINAL is recognised only at the start of a line outside
code blocks, with balanced parentheses and quotes, so prose that mentions FINAL(...) mid-sentence
or code that calls it is never mistaken for an answer (the substring bug of small ports).
"""

from __future__ import annotations

import ast
import re
import warnings
from dataclasses import dataclass

# The file name the host parses the model's code and answers under. Python warns about an invalid
# escape ('\d' in a plain string) while parsing (a SyntaxWarning from 3.12, a DeprecationWarning
# before): that is the model's text, so the warning is not the user's to see on stderr, nor an error
# under `-W error`; only parses under this name are silenced (attack round 26).
MODEL_SOURCE = "<model code>"
for _category in (SyntaxWarning, DeprecationWarning):
    warnings.filterwarnings("ignore", category=_category, module=re.escape(MODEL_SOURCE))

# A fence: ``` and a language on its first line, then the body up to the closing ``` (or the end).
# Python 3.10's `re` has no atomic groups, so each is written `(?=(?P<x>...))(?P=x)`: the lookahead
# takes the longest run and the backreference consumes it whole, never backtracking into it. With
# plain `[ \t]*...[^\n]*`, overlapping runs backtracked quadratically: a line of backticks or a long
# first line without a newline (a 1 MB reply) never finished parsing. As in CommonMark, the info
# string after the language holds no backtick.
_FENCE = re.compile(
    r"```(?=(?P<space>[ \t]*))(?P=space)(?=(?P<lang>[A-Za-z0-9_+-]*))(?P=lang)(?=(?P<info>[^\n`]*))(?P=info)\n"
    r"(?P<body>.*?)(?:```|\Z)",
    re.DOTALL,
)
_CODE_LANGUAGES = {"", "python", "py", "python3", "repl"}
# Small models write "Final(...)" too; only the start of a line counts, so prose is safe.
_FINAL_START = re.compile(r"^[ \t>*_`]*(FINAL_VAR|FINAL|Final_var|Final)[ \t]*\(", re.MULTILINE)
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass(frozen=True)
class TextFinal:
    """A FINAL(...) or FINAL_VAR(...) found in the prose of a reply."""

    kind: str  # "FINAL" or "FINAL_VAR"
    argument: str  # the source text between the parentheses, stripped

    @property
    def literal(self) -> str:
        """The argument as text: a quoted string is unquoted, anything else is kept verbatim.

        Numbers stay as written: `FINAL(007)` and `FINAL(1_000)` mean those characters.
        Parsed, never evaluated: only a string is kept, and building any other literal (a set of
        members whose hashes collide) took the host quadratic time, a minute for 1.2 MB (attack
        round 16).
        """
        tree = parse_code(self.argument)
        if tree is None or len(tree.body) != 1 or not isinstance(tree.body[0], ast.Expr):
            return self.argument
        value = tree.body[0].value
        return value.value if isinstance(value, ast.Constant) and isinstance(value.value, str) else self.argument

    @property
    def variable_name(self) -> str | None:
        """The variable this FINAL refers to, if its argument is a name or a quoted name."""
        candidate = self.literal if self.kind == "FINAL_VAR" else self.argument
        return candidate if _IDENTIFIER.match(candidate) else None


def _code_blocks(reply: str) -> list[re.Match[str]]:
    """The blocks that hold code: the labelled ones (```python, ```repl) if there are any.

    Small models often follow their code with the output they expect, in an unlabelled block;
    running that invented output as code fails, so an unlabelled block counts as code only in a
    reply that labels none.
    """
    blocks = [
        m for m in _FENCE.finditer(reply) if m.group("lang").lower() in _CODE_LANGUAGES and m.group("body").strip()
    ]
    labelled = [m for m in blocks if m.group("lang")]
    return labelled or blocks


def extract_code(reply: str) -> str | None:
    """The reply's first code block, or None if it has none.

    One block is one step: a model that writes a second block has not seen the first one's
    output yet, so what it writes in between (and any answer it draws from it) is invented.
    """
    blocks = _code_blocks(reply)
    return blocks[0].group("body").strip("\n") if blocks else None


def parse_code(code: str) -> ast.Module | None:
    """The model's code as a syntax tree, or None when it does not parse.

    Every reading of model code on the host goes through here, because the parser raises more than
    SyntaxError on hostile input: deep nesting gives RecursionError or MemoryError, a NUL byte
    ValueError. One place that missed them let a step raise out of a session's question.
    """
    try:
        return ast.parse(code, MODEL_SOURCE)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return None


def bound_names(code: str) -> list[str]:
    """Top-level names `code` binds (assignments, loops, defs, imports), in order; none if it does not parse."""
    tree = parse_code(code)
    names: dict[str, None] = {}  # ordered and deduplicated in one pass (a list's `in` made it quadratic)
    for statement in tree.body if tree is not None else ():
        for node in _binding_targets(statement):
            if isinstance(node, ast.Name):
                names.setdefault(node.id)
    return list(names)


def _binding_targets(statement: ast.stmt) -> list[ast.AST]:
    if isinstance(statement, ast.Assign):
        return [n for target in statement.targets for n in ast.walk(target)]
    if isinstance(statement, (ast.AugAssign, ast.AnnAssign, ast.For)):
        return list(ast.walk(statement.target))
    if isinstance(statement, (ast.FunctionDef, ast.ClassDef)):
        return [ast.Name(id=statement.name)]
    if isinstance(statement, (ast.Import, ast.ImportFrom)):
        return [ast.Name(id=(alias.asname or alias.name).split(".")[0]) for alias in statement.names]
    return []


def holds_statements(code: str) -> bool:
    """Whether code does anything: a block of comments only ("# No code needed here") does not.

    Code that does not parse counts as code: running it shows the model its syntax error.
    """
    tree = parse_code(code)
    return tree is None or bool(tree.body)


def count_code_blocks(reply: str) -> int:
    return len(_code_blocks(reply))


def cut_after_code(reply: str) -> str:
    """The reply up to the end of its first code block, or the whole reply if it has none.

    What a model writes after its code, before it has seen the output, is invented; it is not
    kept in the conversation the model reads next.
    """
    blocks = _code_blocks(reply)
    return reply[: blocks[0].end()].rstrip() if blocks else reply


def strip_code(reply: str) -> str:
    """The reply with its fenced blocks removed."""
    return _FENCE.sub("\n", reply)


def find_text_final(reply: str) -> TextFinal | None:
    """The first FINAL(...) / FINAL_VAR(...) that opens a line of the reply's prose."""
    prose = strip_code(reply)
    match = _FINAL_START.search(prose)
    if match is None:
        return None
    argument = _balanced_argument(prose, match.end())
    return TextFinal(kind=match.group(1).upper(), argument=argument.strip())


def _balanced_argument(text: str, start: int) -> str:
    """Text from `start` up to the parenthesis that closes the one just before it.

    Quotes (single, double, triple) are skipped whole. A reply cut off before the closing
    parenthesis yields everything to its end: the model's answer, minus the missing ")".
    """
    depth = 1
    i = start
    n = len(text)
    # Where a quote of each kind was found unclosed: every later one on that line is unclosed too
    # (the scan that failed passed through it in step), so it is not scanned again. Without this a
    # line of escaped quotes took quadratic time (an 80 KB reply: 114 s on the host).
    unclosed_until = {"'": -1, '"': -1}
    while i < n:
        ch = text[i]
        if ch in "'\"":
            triple = text[i : i + 3]
            if triple in ("'''", '"""'):
                end = text.find(triple, i + 3)
                i = n if end < 0 else end + 3
                continue
            if i < unclosed_until[ch]:
                i += 1
                continue
            after = _skip_quoted(text, i, ch)
            if after == i + 1:  # unclosed on its line: literal, and so is every later one there
                line_end = text.find("\n", i)
                unclosed_until[ch] = n if line_end < 0 else line_end
            i = after
            continue
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return text[start:i]
        i += 1
    return text[start:].rstrip().removesuffix(")")


def _skip_quoted(text: str, i: int, quote: str) -> int:
    """Index just past the quoted string opening at `i`; an unclosed quote on its line is literal."""
    j = i + 1
    while j < len(text):
        ch = text[j]
        if ch == "\\":
            j += 2
            continue
        if ch == quote:
            return j + 1
        if ch == "\n":
            return i + 1  # an apostrophe in prose, not a string
        j += 1
    return i + 1
