"""Hints a step's observation adds where the output or error alone misleads the model.

A `NameError` for a name an earlier step assigns says "not defined", and small models then guard
against a missing value (`if not rows: ...`) or give up, when the cause is the earlier step's own
error: it stopped before the assignment ran. The hint names that step and its error, so the fix
goes where the fault is.

An output made only of text the step's own code wrote (`print("Found it.")`, or the match of a
literal pattern, `re.search(r"WARN", context).group()`) shows nothing of `context`; small models
read it as a finding and then answer with it (the bundled model answered "WARN" for the code in a
WARN line). The hint says so.

Called by the node's step loop; they read only the step and the trajectory.
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Sequence

from rlm.engine.parsing import bound_names, parse_code
from rlm.engine.result import StepRecord

_UNDEFINED = re.compile(r"NameError: name '(\w+)' is not defined")
_ERROR_SHOWN_CHARS = 160


@functools.lru_cache(maxsize=64)
def _bound(code: str) -> frozenset[str]:
    """The names a step binds, parsed once per step (each later NameError asks about every step)."""
    return frozenset(bound_names(code))


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


def own_text_hint(code: str, output: str) -> str | None:
    """Said when every line `code` printed is one of its own string constants."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    if not lines or len(lines) > 5:
        return None
    written = _string_constants(code)
    if not all(line in written for line in lines):
        return None
    shown = lines[0] if len(lines[0]) <= 60 else lines[0][:59] + "…"
    return (
        f"That output holds only text your code wrote itself ({shown!r}), nothing read from `context`: "
        "a message or the match of a literal pattern is not the data. Print the part of `context` "
        "you found, such as the whole lines that contain it, and read the answer there."
    )


@functools.lru_cache(maxsize=64)
def _string_constants(code: str) -> frozenset[str]:
    tree = parse_code(code)
    if tree is None:
        return frozenset()
    return frozenset(
        node.value.strip() for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)
    )
