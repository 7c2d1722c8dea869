"""Running one batch item: an `RLM` built from the batch's and the item's settings, awaited with a timeout.

Shared by the local runner (in its event loop) and the Ray runner (inside each Ray task). Whatever
goes wrong with the item — its settings, its context, the provider, a timeout — becomes its
`BatchResult`; nothing raises out of here but cancellation.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlm.batch.items import BATCH_WIDE_SETTINGS, BatchItem
from rlm.batch.result import BatchResult, redact
from rlm.errors import ConfigurationError
from rlm.tracking.usage import UsageTotals

OUTPUT_TYPES: dict[str, type] = {"str": str, "int": int, "float": float, "bool": bool, "list": list, "dict": dict}


@dataclass(frozen=True)
class ItemPlan:
    """What every item of one batch shares: RLM settings, output folders, the per-item time limit."""

    rlm_settings: dict[str, Any] = field(default_factory=dict)
    history_dir: str | None = None
    graph_dir: str | None = None
    item_timeout: float | None = None
    secrets: tuple[str, ...] = ()


async def arun_item(item: BatchItem, context: Any, plan: ItemPlan) -> BatchResult:
    """The item's result; `context` is the loaded context, or the exception loading it raised."""
    started = time.perf_counter()
    paths = output_paths(item.id, plan)
    # Counted from events as the calls happen: an item that fails (its item_timeout, a provider
    # error) has spent them all the same, and the batch budget must be charged for them.
    spent = UsageTotals()
    try:
        if isinstance(context, BaseException):
            raise context
        rlm, run_kwargs = build_rlm(item, plan, paths, spent)
        if plan.item_timeout is None:
            result = await rlm.arun(item.query, context, **run_kwargs)
        else:
            try:
                result = await asyncio.wait_for(rlm.arun(item.query, context, **run_kwargs), plan.item_timeout)
            except asyncio.TimeoutError:
                raise TimeoutError(
                    f"the item ran longer than its {plan.item_timeout:g} s limit (item_timeout)"
                ) from None
    except Exception as exc:
        elapsed = time.perf_counter() - started
        failed = BatchResult.failed(item.id, exc, elapsed, meta=item.meta, **usage_fields(spent), **paths)
        return _redacted(failed, plan.secrets)
    return BatchResult(
        id=item.id,
        answer=result.answer,
        value=getattr(result, "value", None),
        finish_reason=result.finish_reason,
        iterations=result.iterations,
        depth=result.depth,
        llm_calls=result.llm_calls,
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
        cost=result.cost,
        usage={model: vars(usage) for model, usage in result.usage.items()},
        wall_time_s=round(time.perf_counter() - started, 3),
        meta=item.meta,
        **paths,
    )


def usage_fields(spent: UsageTotals) -> dict[str, Any]:
    """A failed item's LM calls, tokens and cost, as far as it went (the BatchResult fields)."""
    by_model = dict(spent.by_model)
    costs = [u.cost for u in by_model.values()]
    return {
        "llm_calls": sum(u.calls for u in by_model.values()),
        "prompt_tokens": sum(u.prompt_tokens for u in by_model.values()),
        "completion_tokens": sum(u.completion_tokens for u in by_model.values()),
        "cost": None if any(c is None for c in costs) else sum(c or 0.0 for c in costs),
        "usage": {model: vars(usage) for model, usage in by_model.items()},
    }


def build_rlm(
    item: BatchItem, plan: ItemPlan, paths: dict[str, str | None], on_event: UsageTotals | None = None
) -> tuple[Any, dict[str, Any]]:
    """The item's RLM and the extra arguments of its `arun`; unknown settings raise ConfigurationError."""
    from rlm.facade import RLM

    check_settings(item.settings)
    run_kwargs: dict[str, Any] = {}
    if item.output is not None:
        if "output" not in inspect.signature(RLM.arun).parameters:
            raise ConfigurationError(
                f"item {item.id!r} asks for output={item.output!r}, but this version of recursive-llm has no typed "
                "answers yet; remove 'output' from the item"
            )
        if item.output not in OUTPUT_TYPES:
            raise ConfigurationError(f"output={item.output!r} is not one of {', '.join(OUTPUT_TYPES)}")
        run_kwargs["output"] = OUTPUT_TYPES[item.output]
    settings = {**plan.rlm_settings, **item.settings}
    theirs = settings.pop("on_event", None)  # rlm.batch(on_event=...) still hears every item's events
    rlm = RLM(
        **settings,
        history_output_path=paths["history_path"],
        graph_output_path=paths["graph_path"],
        on_event=_both(on_event, theirs),
    )
    return rlm, run_kwargs


def _both(first: Callable[[Any], Any] | None, second: Callable[[Any], Any] | None) -> Callable[[Any], Any] | None:
    if first is None or second is None:
        return first or second

    def both(event: Any) -> None:
        first(event)
        second(event)

    return both


def item_settings() -> set[str]:
    """The RLM keyword settings an item may set for itself (its budgets, iterations, ...)."""
    from rlm.facade import RLM

    parameters = inspect.signature(RLM.__init__).parameters.values()
    return {
        p.name
        for p in parameters
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        and p.name != "self"
        and p.name not in BATCH_WIDE_SETTINGS
    }


def check_settings(settings: dict[str, Any] | Any) -> None:
    allowed = item_settings()
    unknown = sorted(set(settings) - allowed)
    if unknown:
        wide = sorted(set(unknown) & BATCH_WIDE_SETTINGS)
        hint = (
            f"{', '.join(wide)} belong to the whole batch (command-line options or rlm.batch(...) arguments)"
            if wide
            else f"per-item settings are RLM keyword settings: {', '.join(sorted(allowed))}"
        )
        raise ConfigurationError(f"unknown item setting(s) {', '.join(unknown)}: {hint}")


def output_paths(item_id: str, plan: ItemPlan) -> dict[str, str | None]:
    name = safe_name(item_id)
    return {
        "history_path": str(Path(plan.history_dir) / f"{name}.json") if plan.history_dir else None,
        "graph_path": str(Path(plan.graph_dir) / f"{name}.json") if plan.graph_dir else None,
    }


def safe_name(item_id: str) -> str:
    """A file name for an id; ids that had to change get a hash so two never share a file."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", item_id)[:80]
    if name != item_id or name.startswith("."):
        digest = hashlib.sha256(item_id.encode("utf-8", "surrogatepass")).hexdigest()
        name = f"{name}-{digest[:8]}"
    return name


def _redacted(result: BatchResult, secrets: tuple[str, ...]) -> BatchResult:
    if not secrets or result.error is None:
        return result
    from dataclasses import replace

    return replace(result, error=redact(result.error, secrets))
