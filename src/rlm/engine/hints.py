"""Hints a step's observation adds from what earlier steps did, where the error alone misleads.

A `NameError` for a name an earlier step assigns says "not defined", and small models then guard
against a missing value (`if not rows: ...`) or give up, when the cause is the earlier step's own
error: it stopped before the assignment ran. The hint names that step and its error, so the fix
goes where the fault is. Called by the node's step loop; it reads only the trajectory.

(A hint for outputs made only of the code's own text was tried and removed, 2026-11-26: it did not
help the bundled model on the items it was made for, and it misread outputs that are findings,
such as `print("yes" if "x" in context else "no")`; docs/BENCHMARKS.md.)
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

from rlm.engine.parsing import bound_names
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
