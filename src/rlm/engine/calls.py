"""Every LM call of the engine goes through here: budget, usage, cost, events, error translation.

Usage comes from DSPy's own `track_usage`, cost from LiteLLM's price table; the engine's loop
only asks for a reply.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import dspy

from rlm.engine.concurrency import RequestSlots
from rlm.engine.limits import CallBudget
from rlm.engine.step import ReplAdapter, render_messages
from rlm.errors import RLMError
from rlm.events import EventBus, LMCalled
from rlm.models.errors import translate_lm_error
from rlm.models.prompt_cache import cache_refused, step_cache
from rlm.models.retry import acall_with_retries, call_with_retries, policy_for
from rlm.tracking.redact import known_secrets, redact
from rlm.utf8 import utf8_text  # every reply enters the engine through it


@dataclass(frozen=True)
class CallSite:
    """Who is calling: the node, its depth, and the tree's bus, budget and request slots."""

    node_id: str
    depth: int
    bus: EventBus
    budget: CallBudget
    requests: RequestSlots
    run_key: str = ""  # the tree's name for providers' prompt caches


def model_name(lm: dspy.BaseLM) -> str:
    return str(getattr(lm, "model", type(lm).__name__))


@dataclass(frozen=True)
class Tokens:
    """One call's usage as the provider reported it; `cached` and `cache_written` are part of `prompt`."""

    prompt: int = 0
    completion: int = 0
    cached: int = 0
    cache_written: int = 0


def _tokens(tracker: Any) -> Tokens:
    # DSPy's usage dicts: lm15's provider-verbatim counters in OpenAI's shape, Anthropic's cache
    # reads and writes folded into prompt_tokens and listed in prompt_tokens_details.
    prompt = completion = cached = written = 0
    for usage in tracker.get_total_tokens().values():
        prompt += int(usage.get("prompt_tokens") or 0)
        completion += int(usage.get("completion_tokens") or 0)
        details = usage.get("prompt_tokens_details") or {}
        cached += int(details.get("cached_tokens") or 0)
        written += int(details.get("cache_creation_tokens") or 0)
    return Tokens(prompt, completion, cached, written)


def estimate_cost(
    model: str, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0, cache_written_tokens: int = 0
) -> float | None:
    """USD from LiteLLM's price table (the copy DSPy bundles), or None when the model has no price.

    Cached prompt tokens are priced at the table's cache-read rate and cache writes at its
    cache-write rate where it lists them (both are part of `prompt_tokens`).
    """
    rates = _token_rates(model)
    if rates is None:
        return None
    prompt_rate, completion_rate, read_rate, write_rate = rates
    fresh = max(prompt_tokens - cached_tokens - cache_written_tokens, 0)
    return (
        fresh * prompt_rate
        + cached_tokens * (prompt_rate if read_rate is None else read_rate)
        + cache_written_tokens * (prompt_rate if write_rate is None else write_rate)
        + completion_tokens * completion_rate
    )


@functools.lru_cache(maxsize=256)
def _token_rates(model: str) -> tuple[float, float, float | None, float | None] | None:
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
    read_rate, write_rate = rate(info, "cache_read_input_token_cost"), rate(info, "cache_creation_input_token_cost")
    return prompt_rate, completion_rate, read_rate, write_rate


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
        self.tracker: Any = None  # DSPy's usage tracker, while `tracked` runs

    @contextlib.contextmanager
    def tracked(self) -> Iterator[None]:
        """The call's usage scope: a failure is reported, and raised as the library's error."""
        with dspy.track_usage() as tracker:
            self.tracker = tracker
            try:
                yield
            except Exception as exc:
                self.report(None, exc)
                if isinstance(exc, RLMError):  # ours as it is (a retry refused by the time budget)
                    raise
                raise translate_lm_error(exc, self.model, self._secrets()) from exc
            except BaseException as exc:
                # Cancelled in flight (a batch item's timeout, a task's cancel): the provider may
                # bill the request all the same, so it is reported and counted as a call. A
                # subscriber that fails then must not replace the cancel on its way out.
                with contextlib.suppress(Exception):
                    self.report(None, exc)
                raise

    def _secrets(self) -> tuple[str, ...]:
        # Error text goes into the history and graph files, and to the model's code (a sub-call's
        # error): a provider may quote the key in it. A key for an OpenAI-compatible server is held
        # by its engine (models/resolve.py), not in the kwargs.
        engine_key = getattr(getattr(self.lm, "engine", None), "api_key", None)
        return known_secrets([getattr(self.lm, "kwargs", {}).get("api_key"), engine_key])

    def report(self, output: str | None, error: BaseException | None) -> None:
        tokens = _tokens(self.tracker)
        cost = estimate_cost(self.model, tokens.prompt, tokens.completion, tokens.cached, tokens.cache_written)
        self.site.bus.emit(
            LMCalled(
                node_id=self.site.node_id,
                depth=self.site.depth,
                model=self.model,
                purpose=self.purpose,
                messages=tuple(self.messages),
                output=output,
                prompt_tokens=tokens.prompt,
                completion_tokens=tokens.completion,
                cost=cost,
                latency_s=time.perf_counter() - self.started,
                error=None if error is None else redact(f"{type(error).__name__}: {error}", self._secrets()),
                timestamp=time.time(),
                cached_prompt_tokens=tokens.cached,
            )
        )


def _step_messages(predictor: dspy.Predict, inputs: dict[str, Any]) -> list[dict[str, str]]:
    demos = [dict(d) for d in predictor.demos]
    return render_messages(predictor.signature.instructions, demos, inputs)


def _step_config(site: CallSite, lm: dspy.BaseLM, stop: tuple[str, ...]) -> dict[str, Any]:
    """Per-call LM settings of a step: stop sequences, and the provider's prompt cache for the conversation."""
    config: dict[str, Any] = {"stop": list(stop)} if stop else {}
    cache = step_cache(lm, site.run_key)
    if cache is not None:
        config["prompt_cache"] = cache
    return {"config": config} if config else {}


def _without_cache(exc: Exception, lm: dspy.BaseLM, config: dict[str, Any]) -> bool:
    """Whether DSPy refused the call for its prompt cache (before sending): then it goes again without.

    DSPy serves a request lm15 cannot carry (an LM setting it has no field for) through LiteLLM,
    which has no prompt-cache bridge, so with a cache setting it refuses instead of falling back.
    """
    if "prompt_cache" not in config.get("config", {}) or not isinstance(exc, dspy.LMUnsupportedFeatureError):
        return False
    cache_refused(lm)
    return True


def ask_step(
    site: CallSite,
    predictor: dspy.Predict,
    lm: dspy.BaseLM,
    inputs: dict[str, Any],
    purpose: str = "step",
    stop: tuple[str, ...] = (),
) -> str:
    call = _Call(site, lm, purpose, _step_messages(predictor, inputs))

    def attempt() -> Any:
        config = _step_config(site, lm, stop)
        try:
            return predictor(**inputs, **config).reply
        except Exception as exc:
            if not _without_cache(exc, lm, config):
                raise
            return predictor(**inputs, **_step_config(site, lm, stop)).reply

    with call.tracked(), dspy.context(lm=lm, adapter=ReplAdapter()):
        reply = call_with_retries(_held(site, attempt), policy_for(lm), site.budget.deadline)
    text = utf8_text(str(reply or ""))
    call.report(text, None)
    return text


async def aask_step(
    site: CallSite,
    predictor: dspy.Predict,
    lm: dspy.BaseLM,
    inputs: dict[str, Any],
    purpose: str = "step",
    stop: tuple[str, ...] = (),
) -> str:
    call = _Call(site, lm, purpose, _step_messages(predictor, inputs))

    async def attempt() -> Any:
        config = _step_config(site, lm, stop)
        try:
            return (await predictor.acall(**inputs, **config)).reply
        except Exception as exc:
            if not _without_cache(exc, lm, config):
                raise
            return (await predictor.acall(**inputs, **_step_config(site, lm, stop))).reply

    with call.tracked(), dspy.context(lm=lm, adapter=ReplAdapter()):
        reply = await acall_with_retries(_aheld(site, attempt), policy_for(lm), site.budget.deadline)
    text = utf8_text(str(reply or ""))
    call.report(text, None)
    return text


def ask_plain(site: CallSite, lm: dspy.BaseLM, prompt: str, purpose: str) -> str:
    call = _Call(site, lm, purpose, [{"role": "user", "content": prompt}])
    with call.tracked():
        outputs = call_with_retries(_held(site, lambda: lm(prompt)), policy_for(lm), site.budget.deadline)
    text = utf8_text(_first_text(outputs))
    call.report(text, None)
    return text


async def aask_plain(site: CallSite, lm: dspy.BaseLM, prompt: str, purpose: str) -> str:
    call = _Call(site, lm, purpose, [{"role": "user", "content": prompt}])
    with call.tracked():
        outputs = await acall_with_retries(_aheld(site, lambda: lm.acall(prompt)), policy_for(lm), site.budget.deadline)
    text = utf8_text(_first_text(outputs))
    call.report(text, None)
    return text


def _held(site: CallSite, request: Callable[[], Any]) -> Callable[[], Any]:
    """`request` holding one of the tree's request slots while it is out, not while a retry waits."""

    def run() -> Any:
        with site.requests.hold():
            return request()

    return run


def _aheld(site: CallSite, request: Callable[[], Awaitable[Any]]) -> Callable[[], Awaitable[Any]]:
    async def run() -> Any:
        async with site.requests.ahold():
            return await request()

    return run


def _first_text(outputs: Any) -> str:
    if not outputs:
        return ""
    first = outputs[0]
    if isinstance(first, dict):
        return str(first.get("text") or "")
    return str(first)
