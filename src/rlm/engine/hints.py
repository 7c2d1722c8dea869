"""Hints a step's observation adds where the error alone misleads: from what earlier steps did, or
from what the error's words hide.

A `NameError` for a name an earlier step assigns says "not defined", and small models then guard
against a missing value (`if not rows: ...`) or give up, when the cause is the earlier step's own
error: it stopped before the assignment ran. The hint names that step and its error, so the fix
goes where the fault is. `'NoneType' object has no attribute 'group'` hides that a regex search
found nothing. `'dict_items' object is not subscriptable` hides that a view or an iterator (a dict's
`.items()`, `map`, `re.finditer`, ...) must become a list before it can be sliced: the bundled model
ran `context.items()[:5]` three times, unchanged, until its steps ran out. Called by the node's step
loop; it reads only the error and the trajectory.

(A hint for outputs made only of the code's own text was tried and removed, 2026-11-26: it did not
help the bundled model on the items it was made for, and it misread outputs that are findings,
such as `print("yes" if "x" in context else "no")`; docs/BENCHMARKS.md.)
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Sequence

from rlm.engine.parsing import MODEL_SOURCE, bound_names
from rlm.engine.result import StepRecord

_UNDEFINED = re.compile(r"NameError: name '(\w+)' is not defined")
_NO_MATCH = re.compile(r"AttributeError: 'NoneType' object has no attribute '(group|groups|groupdict|start|end|span)'")
_FAILED_LINE = re.compile(r"\(at line \d+: (.+)\)\s*$")  # the sandbox's error ends with the line that raised
_SEARCHES = frozenset({"search", "match", "fullmatch"})
_NOT_INDEXABLE = re.compile(r"TypeError: '([\w.]+)' object is not subscriptable")
# Types of views and iterators: a list of them has an index, they do not.
_ITERATOR_TYPES = frozenset({"dict_items", "dict_keys", "dict_values", "map", "filter", "zip", "enumerate", "reversed",
                             "generator", "set", "frozenset", "callable_iterator"})  # fmt: skip
_LINE_CHARS = 400  # the sandbox quotes at most 200 characters of the failing line
_ERROR_SHOWN_CHARS = 160


@functools.lru_cache(maxsize=64)
def _bound(code: str) -> frozenset[str]:
    """The names a step binds, parsed once per step (each later NameError asks about every step)."""
    return frozenset(bound_names(code))


def error_hint(error: str | None, earlier: Sequence[StepRecord]) -> str | None:
    """What a step's error means where its text alone misleads, or None."""
    return unset_name_hint(error, earlier) or no_match_hint(error) or not_indexable_hint(error)


def no_match_hint(error: str | None) -> str | None:
    """`re.search(...).group()` on no match: the error names NoneType, not the search that found nothing.

    The bundled model read it as a fault of its `if` and ran the same search again until its steps
    ran out; told only to print "that text", it printed the start of `context` instead of the line
    it had searched (docs/BENCHMARKS.md, the main-job example). So the hint names the searched text
    as the failing line wrote it."""
    found = _NO_MATCH.search(error or "")
    if found is None:
        return None
    searched = _searched_text(error or "")
    look = f"Print {searched} to see what it holds" if searched else "Print the text you searched to see what it holds"
    return (
        f"re.search, re.match and re.fullmatch return None when the pattern is not in the text, so "
        f".{found.group(1)}() failed: that pattern does not occur in the text you searched. {look}, "
        "then write a pattern that fits it."
    )


def _searched_text(error: str) -> str | None:
    """The text argument of the one re.search/match/fullmatch call in the failing line, as written."""
    tree = _failing_line(error)
    if tree is None:
        return None
    searched = [text for node in ast.walk(tree) if (text := _searched_argument(node)) is not None]
    if len(searched) != 1:
        return None
    # A name a comprehension binds means nothing after the line (`for l in lines`): no name to print.
    local = {target.id for node in ast.walk(tree) if isinstance(node, ast.comprehension)
             for target in ast.walk(node.target) if isinstance(target, ast.Name)}  # fmt: skip
    if any(isinstance(node, ast.Name) and node.id in local for node in ast.walk(searched[0])):
        return None
    return _written(searched[0])


def _failing_line(error: str) -> ast.AST | None:
    """The line the sandbox's error quotes as having raised, parsed; None when it cannot be.

    The error's text is the worker's (and the model picks an exception's message): kept short, and
    any failure of parsing it is no hint, never an error out of the run."""
    line = _FAILED_LINE.search(error.strip().splitlines()[0][:_LINE_CHARS] if error.strip() else "")
    if line is None:
        return None
    text = line.group(1).strip()
    if text.endswith(":"):
        text += " pass"  # the header of a `for`/`if`/`with` block, whose body is on the next lines
    try:
        return ast.parse(text, MODEL_SOURCE)
    except Exception:  # part of a longer statement, a clipped line
        return None


def _written(node: ast.AST) -> str | None:
    """`node` as code; None for text ast cannot write back (an f-string holding a control character
    raised ValueError, attack round 22)."""
    try:
        return ast.unparse(node)
    except Exception:
        return None


def _searched_argument(node: ast.AST) -> ast.expr | None:
    """The text a search call searches: re.search(pattern, TEXT), or a compiled pattern's .search(TEXT)."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in _SEARCHES):
        return None
    on_module = isinstance(node.func.value, ast.Name) and node.func.value.id == "re"
    position = 1 if on_module else 0
    return node.args[position] if len(node.args) > position else None


def not_indexable_hint(error: str | None) -> str | None:
    """An index or slice of a view or iterator: the error names its type, not the fix (make a list)."""
    found = _NOT_INDEXABLE.search(error or "")
    if found is None or not (found.group(1) in _ITERATOR_TYPES or found.group(1).endswith("_iterator")):
        return None
    kind = found.group(1)
    tree = _failing_line(error or "")
    # Each subscript whose value is a call: the line's only one is the one that failed.
    indexed = [node for node in ast.walk(tree or ast.Module([], [])) if isinstance(node, ast.Subscript)
               and isinstance(node.value, ast.Call)]  # fmt: skip
    fix = "list(...) around it"
    if len(indexed) == 1:
        listed = ast.Subscript(ast.Call(ast.Name("list"), [indexed[0].value], []), indexed[0].slice)
        fix = _written(listed) or fix
    return (
        f"A '{kind}' object is a view or an iterator: it gives its items one by one, with no index or slice. "
        f"Make a list of it first: {fix}."
    )


def unset_name_hint(error: str | None, earlier: Sequence[StepRecord]) -> str | None:
    """Why the name `error` reports undefined was never set, if the latest earlier step assigning it failed."""
    found = _UNDEFINED.search(error or "")
    if found is None:
        return None
    name = found.group(1)
    for step in reversed(earlier):
        if name in _bound(step.code):
            if step.error is None:
                return None  # it was set; a restart or a `del` lost it, and the error says so
            cause = step.error.strip().splitlines()[0] if step.error.strip() else "an error"
            if len(cause) > _ERROR_SHOWN_CHARS:
                cause = cause[: _ERROR_SHOWN_CHARS - 1] + "…"
            return (
                f"`{name}` was never set: step {step.iteration} assigns it, but that step stopped with "
                f"an error before the assignment ran ({cause}). Fix that error and set `{name}` again."
            )
    return None
