"""Every LM call of the engine goes through here: budget, usage, cost, events, error translation.

Usage comes from DSPy's own `track_usage`, cost from LiteLLM's price table; the engine's loop
only asks for a reply.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any

import dspy

from rlm.engine.concurrency import RequestSlots
from rlm.engine.limits import CallBudget
from rlm.engine.step import ReplAdapter, render_messages
from rlm.events import EventBus, LMCalled
from rlm.models.errors import translate_lm_error


@dataclass(frozen=True)
class CallSite:
    """Who is calling: the node, its depth, and the tree's bus, budget and request slots."""

    node_id: str
    depth: int
    bus: EventBus
    budget: CallBudget
    requests: RequestSlots


def model_name(lm: dspy.BaseLM) -> str:
    return str(getattr(lm, "model", type(lm).__name__))


def _usage_and_cost(tracker: Any, model: str) -> tuple[int, int, float | None]:
    totals = tracker.get_total_tokens()
    prompt = sum(int(u.get("prompt_tokens") or 0) for u in totals.values())
    completion = sum(int(u.get("completion_tokens") or 0) for u in totals.values())
    return prompt, completion, estimate_cost(model, prompt, completion)


def estimate_cost(model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
    """USD from LiteLLM's price table (the copy DSPy bundles), or None when the model has no price."""
    rates = _token_rates(model)
    if rates is None:
        return None
    return prompt_tokens * rates[0] + completion_tokens * rates[1]


@functools.lru_cache(maxsize=256)
def _token_rates(model: str) -> tuple[float, float] | None:
    # Cached: a lookup of an unlisted model scans the whole table, and sub-calls come in bursts.
    from dspy.clients.model_metadata import model_info, rate

    provider, _, name = model.partition("/")
    if not name:
        provider, name = "openai", model
    try:
        info = model_info(provider, name)
    except Exception:  # price metadata is advisory: never fail a call over it
        return None
    prompt_rate, completion_rate = rate(info, "input_cost_per_token"), rate(info, "output_cost_per_token")
    if prompt_rate is None or completion_rate is None:
        return None
    return prompt_rate, completion_rate


class _Call:
    """One tracked call: opens the usage scope, times it, and reports it however it ends."""

    def __init__(
        self,
        site: CallSite,
        lm: dspy.BaseLM,
        purpose: str,
        messages: list[dict[str, str]],
    ) -> None:
        self.site, self.lm, self.purpose, self.messages = site, lm, purpose, messages
        # Only the root's last answer may spend the call the budget holds back for it.
        site.budget.take(closing=purpose == "answer_now" and site.depth == 0)
        self.model = model_name(lm)
        self.started = time.perf_counter()

    def report(self, tracker: Any, output: str | None, error: BaseException | None) -> None:
        prompt, completion, cost = _usage_and_cost(tracker, self.model)
        self.site.bus.emit(
            LMCalled(
                node_id=self.site.node_id,
                depth=self.site.depth,
                model=self.model,
                purpose=self.purpose,
                messages=tuple(self.messages),
                output=output,
                prompt_tokens=prompt,
                completion_tokens=completion,
                cost=cost,
                latency_s=time.perf_counter() - self.started,
                error=None if error is None else f"{type(error).__name__}: {error}",
                timestamp=time.time(),
            )
        )


def _step_messages(predictor: dspy.Predict, inputs: dict[str, Any]) -> list[dict[str, str]]:
    demos = [dict(d) for d in predictor.demos]
    return render_messages(predictor.signature.instructions, demos, inputs)


def _stop_config(stop: tuple[str, ...]) -> dict[str, Any]:
    return {"config": {"stop": list(stop)}} if stop else {}


def ask_step(
    site: CallSite,
    predictor: dspy.Predict,
    lm: dspy.BaseLM,
    inputs: dict[str, Any],
    purpose: str = "step",
    stop: tuple[str, ...] = (),
) -> str:
    call = _Call(site, lm, purpose, _step_messages(predictor, inputs))
    with dspy.track_usage() as tracker, dspy.context(lm=lm, adapter=ReplAdapter()):
        try:
            with site.requests.hold():
                reply = predictor(**inputs, **_stop_config(stop)).reply
        except Exception as exc:
            call.report(tracker, None, exc)
            raise translate_lm_error(exc, call.model) from exc
    call.report(tracker, reply, None)
    return str(reply or "")


async def aask_step(
    site: CallSite,
    predictor: dspy.Predict,
    lm: dspy.BaseLM,
    inputs: dict[str, Any],
    purpose: str = "step",
    stop: tuple[str, ...] = (),
) -> str:
    call = _Call(site, lm, purpose, _step_messages(predictor, inputs))
    with dspy.track_usage() as tracker, dspy.context(lm=lm, adapter=ReplAdapter()):
        try:
            async with site.requests.ahold():
                reply = (await predictor.acall(**inputs, **_stop_config(stop))).reply
        except Exception as exc:
            call.report(tracker, None, exc)
            raise translate_lm_error(exc, call.model) from exc
    call.report(tracker, reply, None)
    return str(reply or "")


def ask_plain(site: CallSite, lm: dspy.BaseLM, prompt: str, purpose: str) -> str:
    call = _Call(site, lm, purpose, [{"role": "user", "content": prompt}])
    with dspy.track_usage() as tracker:
        try:
            with site.requests.hold():
                outputs = lm(prompt)
        except Exception as exc:
            call.report(tracker, None, exc)
            raise translate_lm_error(exc, call.model) from exc
    text = _first_text(outputs)
    call.report(tracker, text, None)
    return text


async def aask_plain(site: CallSite, lm: dspy.BaseLM, prompt: str, purpose: str) -> str:
    call = _Call(site, lm, purpose, [{"role": "user", "content": prompt}])
    with dspy.track_usage() as tracker:
        try:
            async with site.requests.ahold():
                outputs = await lm.acall(prompt)
        except Exception as exc:
            call.report(tracker, None, exc)
            raise translate_lm_error(exc, call.model) from exc
    text = _first_text(outputs)
    call.report(tracker, text, None)
    return text


def _first_text(outputs: Any) -> str:
    if not outputs:
        return ""
    first = outputs[0]
    if isinstance(first, dict):
        return str(first.get("text") or "")
    return str(first)
