"""The cluster runner: each item a Ray task, each distinct context put in Ray's object store once.

Called by `rlm.batch(..., ray=...)` / `rlm batch --ray [ADDRESS]` (extra `[ray]`). A worker keeps
the last few contexts it fetched, so 50 questions about one corpus fetch it once per worker. API
keys reach the workers as environment variables of Ray's runtime environment, never inside a task's
arguments or a result. A task whose worker dies is run again by Ray (`max_retries`).
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

from rlm.batch.budget import BatchBudget, BatchStats
from rlm.batch.execute import ItemPlan, arun_item
from rlm.batch.items import BatchItem
from rlm.batch.result import BatchResult, redact
from rlm.errors import ConfigurationError
from rlm.install_check import install_hint

# The explicit api_key= of a batch travels to the workers under this name.
API_KEY_VARIABLE = "RLM_BATCH_API_KEY"
# Contexts a worker keeps after fetching them; most batches ask many questions of a few corpora.
WORKER_CONTEXTS = 4
_worker_contexts: OrderedDict[str, Any] = OrderedDict()


def forwarded_environment(plan: ItemPlan) -> dict[str, str]:
    """What the workers need from this process's environment: the keys of the providers in use (Ray
    shows a runtime environment's variables on its dashboard, so no other key goes) and RLM/LiteLLM
    settings."""
    keys, e2b = _needed_key_variables(plan), _e2b_key_usable(plan)
    env = {
        name: value
        for name, value in os.environ.items()
        if (name.endswith("_API_KEY") and (keys is None or name in keys) and (name != "E2B_API_KEY" or e2b))
        or name.endswith(("_API_BASE", "_API_VERSION"))
        or name.startswith(("RLM_", "LITELLM_"))
    }
    if plan.rlm_settings.get("api_key"):
        env[API_KEY_VARIABLE] = plan.rlm_settings["api_key"]
    return env


def _e2b_key_usable(plan: ItemPlan) -> bool:
    """Whether the items may use E2B_API_KEY, decided here as the registry decides it for a run: a worker
    cannot tell where a key it receives came from, so one it may not use is not sent."""
    from rlm.sandbox.registry import may_use_e2b_key

    return may_use_e2b_key(str(plan.rlm_settings.get("sandbox") or "auto"))


def _needed_key_variables(plan: ItemPlan) -> set[str] | None:
    """The key variables of the chosen models' providers (and E2B's where it may be used), or None
    when a provider is not in our table (then every *_API_KEY goes, as LiteLLM may need any)."""
    from rlm.models.resolve import KEY_VARIABLES, is_local_model, qualified_name

    settings = plan.rlm_settings
    needed = {"E2B_API_KEY"} if _e2b_key_usable(plan) else set()
    for model in (settings.get("model"), settings.get("recursive_model")):
        if not isinstance(model, str) or is_local_model(model):
            continue
        provider = qualified_name(model, settings.get("api_base")).split("/", 1)[0]
        if provider not in KEY_VARIABLES:
            return None
        needed.update(KEY_VARIABLES[provider])
    return needed


def run_ray(
    items: list[BatchItem],
    plan: ItemPlan,
    *,
    address: str | None,
    concurrency: int | None,
    cpus_per_item: float,
    max_retries: int,
    budget: BatchBudget,
    record: Callable[[BatchResult], None],
    stats: BatchStats,
) -> Iterator[BatchResult]:
    try:
        import ray
    except ImportError as exc:
        raise ConfigurationError(f"--ray needs Ray: {install_hint('ray')}") from exc

    env = forwarded_environment(plan)
    runtime_env = {"env_vars": env} if env else None
    started_here = not ray.is_initialized()
    if started_here:  # an address, or None: RAY_ADDRESS / a running local cluster / a new local one
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=False)
    # Keys go through the runtime environment; the plan the tasks receive holds none.
    shipped = replace(plan, rlm_settings={k: v for k, v in plan.rlm_settings.items() if k != "api_key"}, secrets=())
    options: dict[str, Any] = {"num_cpus": cpus_per_item, "max_retries": max_retries}
    if not started_here and runtime_env:
        options["runtime_env"] = runtime_env  # a cluster the caller started: set it per task
    task = ray.remote(_run_item).options(**options)
    if concurrency is None:
        concurrency = max(1, int(ray.cluster_resources().get("CPU", 1) / cpus_per_item))

    needed = Counter(item.context.key for item in items)
    contexts: dict[str, Any] = {}  # key -> [ObjectRef] while items still need it
    inflight: dict[Any, BatchItem] = {}
    pending = iter(items)

    def finish(item: BatchItem, result: BatchResult) -> BatchResult:
        needed[item.context.key] -= 1
        if needed[item.context.key] <= 0:
            contexts.pop(item.context.key, None)  # dropping the last ref frees the object store copy
        if result.error:
            result = replace(result, error=redact(result.error, plan.secrets))
        record(result)
        return result

    try:
        while True:
            while len(inflight) < concurrency and not budget.exhausted and (item := next(pending, None)):
                key = item.context.key
                if key not in contexts:
                    try:
                        stats.context_loads += 1
                        contexts[key] = ray.put(item.context.load())
                        stats.context_puts += 1
                    except Exception as exc:  # this item (and its siblings) record the failure
                        yield finish(item, BatchResult.failed(item.id, exc, 0.0, meta=item.meta))
                        continue
                # Inside a list, the ref reaches the task unresolved: the worker decides whether to fetch.
                try:
                    inflight[task.remote(item, [contexts[key]], shipped)] = item
                except Exception as exc:  # the item cannot be sent (pickling its meta, ...): its own row
                    yield finish(item, BatchResult.failed(item.id, exc, 0.0, meta=item.meta))
            if not inflight:
                return
            ready, _ = ray.wait(list(inflight), num_returns=1)
            for ref in ready:
                item = inflight.pop(ref)
                try:
                    result, fetched = ray.get(ref)
                    stats.worker_context_loads += fetched
                except Exception as exc:  # retries used up (worker lost again and again), or Ray failed
                    result = BatchResult.failed(item.id, exc, 0.0, meta=item.meta)
                yield finish(item, result)
    finally:
        for ref in inflight:
            ray.cancel(ref)
        if started_here:
            ray.shutdown()


def _run_item(item: BatchItem, boxed_context: list[Any], plan: ItemPlan) -> tuple[BatchResult, bool]:
    """The Ray task: fetch the context unless this worker holds it, then run the item."""
    import ray

    ref = boxed_context[0]
    key = ref.hex()
    fetched = key not in _worker_contexts
    if fetched:
        _worker_contexts[key] = ray.get(ref)
        while len(_worker_contexts) > WORKER_CONTEXTS:
            _worker_contexts.popitem(last=False)
    _worker_contexts.move_to_end(key)
    if os.environ.get(API_KEY_VARIABLE):
        plan = replace(plan, rlm_settings={**plan.rlm_settings, "api_key": os.environ[API_KEY_VARIABLE]})
    return asyncio.run(arun_item(item, _worker_contexts[key], plan)), fetched
