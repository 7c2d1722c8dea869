"""`rlm.batch(items, ...)`: many questions, run locally (asyncio) or on Ray, results stored as they finish.

Called by the Python API and by `rlm batch`. It reads the items, skips ids the results file already
holds, checks the settings once, picks the runner, and records each result (store, budget,
progress) on the runner's thread before the runner schedules another item.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlm.batch.budget import BatchBudget, BatchStats
from rlm.batch.execute import ItemPlan
from rlm.batch.items import BatchItem, read_items
from rlm.batch.progress import ProgressLine
from rlm.batch.result import BatchResult
from rlm.batch.store import ResultStore
from rlm.errors import ConfigurationError
from rlm.tracking.redact import known_secrets

DEFAULT_CONCURRENCY = 8


@dataclass
class BatchRun:
    """An iterator of `BatchResult`s, one per item run in this call, in the order they finish.

    Nothing runs until it is iterated; `stats` and `budget` are filled in as it goes.
    """

    _results: Iterator[BatchResult]
    stats: BatchStats
    budget: BatchBudget
    out: Path | None = None
    progress: ProgressLine | None = field(default=None, repr=False)

    def __iter__(self) -> Iterator[BatchResult]:
        return self

    def __next__(self) -> BatchResult:
        return next(self._results)

    def close(self) -> None:
        """Stop early: running items are cancelled, recorded ones stay recorded."""
        close = getattr(self._results, "close", None)
        if close is not None:
            close()


def batch(
    items: str | os.PathLike[str] | Iterable[Mapping[str, Any] | BatchItem],
    *,
    out: str | os.PathLike[str] | None = None,
    concurrency: int | None = None,
    ray: bool | str | None = None,
    retry_failed: bool = False,
    budget_calls: int | None = None,
    budget_tokens: int | None = None,
    budget_usd: float | None = None,
    item_timeout: float | None = None,
    history_dir: str | os.PathLike[str] | None = None,
    graph_dir: str | os.PathLike[str] | None = None,
    ray_cpus_per_item: float = 0.5,
    ray_max_retries: int = 3,
    progress: bool = False,
    **rlm_settings: Any,
) -> BatchRun:
    """Answer many (id, query, context) items; iterate the returned `BatchRun` for `BatchResult`s.

    `items`: a .jsonl or .parquet file, or dicts / `BatchItem`s (see README "Many questions").
    `out`: the results JSONL; ids already in it are skipped (failed ones too unless `retry_failed`).
    `concurrency`: items at once (local default 8; on Ray, the cluster's CPUs / `ray_cpus_per_item`).
    `ray`: True (or "auto") for RAY_ADDRESS / a local cluster, or a cluster address; None runs locally.
    `budget_*`: a limit over the whole batch; once spent no new item starts.
    `rlm_settings`: `RLM(...)` settings for every item (model, api_key, api_base, max_llm_calls, ...).
    """
    todo = read_items(items)
    if concurrency is not None and concurrency < 1:
        raise ConfigurationError(f"concurrency must be at least 1, got {concurrency}")
    if item_timeout is not None and item_timeout <= 0:
        raise ConfigurationError(f"item_timeout must be positive seconds, got {item_timeout}")
    budget = BatchBudget(budget_calls, budget_tokens, budget_usd)
    from rlm.dotenv_keys import load_dotenv_file

    load_dotenv_file()  # keys that live only in ./.env must be known before results are redacted
    plan = ItemPlan(
        rlm_settings=dict(rlm_settings),
        history_dir=str(history_dir) if history_dir else None,
        graph_dir=str(graph_dir) if graph_dir else None,
        item_timeout=item_timeout,
        secrets=_secrets(rlm_settings),
    )
    _check_batch_settings(plan)
    stats = BatchStats(total=len(todo))
    run = BatchRun(iter(()), stats, budget, Path(out) if out else None)
    run._results = _run(run, todo, plan, concurrency, ray, retry_failed, ray_cpus_per_item, ray_max_retries, progress)
    return run


def _run(
    run: BatchRun,
    todo: list[BatchItem],
    plan: ItemPlan,
    concurrency: int | None,
    ray: bool | str | None,
    retry_failed: bool,
    cpus_per_item: float,
    max_retries: int,
    progress: bool,
) -> Iterator[BatchResult]:
    store = ResultStore(run.out, secrets=plan.secrets) if run.out else None
    try:
        if store is not None:
            recorded = store.open()
            keep = {i for i, row in recorded.items() if row.get("status") == "ok" or not retry_failed}
            run.stats.skipped = sum(item.id in keep for item in todo)
            todo = [item for item in todo if item.id not in keep]
        if progress:
            run.progress = ProgressLine(len(todo))

        def record(result: BatchResult) -> None:
            if store is not None:
                store.append(result.to_row())
            run.budget.spend(result)
            run.stats.finished += 1
            if run.progress is not None:
                run.progress.update(result)

        if ray:
            from rlm.batch.ray_runner import run_ray

            address = None if ray is True or ray == "auto" else str(ray)
            results = run_ray(
                todo,
                plan,
                address=address,
                concurrency=concurrency,
                cpus_per_item=cpus_per_item,
                max_retries=max_retries,
                budget=run.budget,
                record=record,
                stats=run.stats,
            )
        else:
            from rlm.batch.local import run_local

            results = run_local(
                todo,
                plan,
                concurrency=concurrency or DEFAULT_CONCURRENCY,
                budget=run.budget,
                record=record,
                stats=run.stats,
            )
        yield from results
        run.stats.not_started = len(todo) - run.stats.finished
    finally:
        if run.progress is not None:
            run.progress.finish()
        if store is not None:
            store.close()


def _check_batch_settings(plan: ItemPlan) -> None:
    """Settings every item shares are checked once, before anything runs: a missing key stops the batch."""
    from rlm.facade import RLM

    RLM(**plan.rlm_settings)


def _secrets(rlm_settings: Mapping[str, Any]) -> tuple[str, ...]:
    """Values that must never reach a results file: the api_key given, and keys in the environment."""
    return known_secrets([rlm_settings.get("api_key")])
