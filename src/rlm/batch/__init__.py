"""Many questions over many contexts: `rlm.batch(items, ...)` and `rlm batch items.jsonl --out results.jsonl`.

items.py reads items, store.py keeps the crash-safe results file, local.py (asyncio) and
ray_runner.py (Ray tasks) run them, progress.py shows them, runner.py ties them together.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from rlm.batch.budget import BatchBudget, BatchStats
from rlm.batch.items import BatchItem, read_items
from rlm.batch.result import BatchResult
from rlm.batch.runner import BatchRun, batch
from rlm.batch.store import ResultStore, load_results

__all__ = [
    "BatchBudget",
    "BatchItem",
    "BatchResult",
    "BatchRun",
    "BatchStats",
    "ResultStore",
    "batch",
    "load_results",
    "read_items",
]


class _CallableModule(types.ModuleType):
    # `rlm.batch(...)` is the public function, and `rlm.batch` is also this package: once the package
    # is imported, Python binds the name `batch` on `rlm` to the package, so the package calls the
    # function. This keeps `rlm.batch(items)` working whichever import happened first.
    def __call__(self, *args: Any, **kwargs: Any) -> BatchRun:
        return batch(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
