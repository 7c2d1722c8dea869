"""Provider retries: honour Retry-After (seconds or an HTTP date), add jitter, cap each wait, and
never wait past the run's time budget.

Why not DSPy's own: DSPy 3.4 owns retries for both of its paths (its LiteLLM engine calls LiteLLM
with `num_retries=0`), and its loop (`dspy/clients/execution.py`, `_delay`) sleeps exactly the
provider's Retry-After however long it is (an HTTP date an hour away is an hour), adds no jitter,
and cannot be told a deadline; none of this is configurable. So the LMs the `RLM` facade builds get
`num_retries=0` and a `RetryPolicy` (`use_policy`), and `engine.calls` sends each request through
`call_with_retries` with the run's deadline. DSPy still decides what is retryable
(`is_retryable_lm_error`) and still parses the header (`exc.retry_after`). An LM you built yourself
and pass in keeps its own DSPy retries (`policy_for` gives it none of ours).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

from rlm.errors import BudgetExceededError, ProviderError
from rlm.tracking.redact import known_secrets, redact

logger = logging.getLogger(__name__)

T = TypeVar("T")

# How long one wait may last. A provider's Retry-After beyond it ends the retries (a request sent
# before the time it named is refused again, and spends an attempt); backoff waits are cut to it.
DEFAULT_MAX_WAIT_S = 60.0


def _positive(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@dataclass(frozen=True)
class RetryPolicy:
    """How a failed provider request is retried.

    `retries`: further attempts after the first. `max_wait_s`: the cap on any one wait.
    `jitter`: waits are spread by up to this share so many clients told the same Retry-After do
    not all return in the same instant (never earlier than the provider asked). `base_s`: the
    first backoff when the provider gives no hint, doubled each attempt.
    """

    retries: int = 3
    max_wait_s: float = DEFAULT_MAX_WAIT_S
    jitter: float = 0.25
    base_s: float = 1.0
    # Keys given in code, kept out of what it says (the environment's keys always are): a provider
    # may quote the key in a refusal (attack round 19: a 429's text reached the model and the log).
    secrets: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        from rlm.errors import ConfigurationError

        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            raise ConfigurationError(f"num_retries must be a non-negative integer, got {self.retries!r}")
        if not _positive(self.max_wait_s):
            raise ConfigurationError(f"max_retry_wait_s must be positive seconds, got {self.max_wait_s!r}")

    def wait(self, exc: BaseException, attempt: int, rng: Callable[[], float] = random.random) -> float:
        """Seconds to wait before retry number `attempt + 1` after `exc`."""
        hint = retry_after_seconds(exc)
        if hint is not None:  # the provider's floor, spread upwards
            wanted = hint * (1 + self.jitter * rng())
        else:  # exponential backoff, "equal jitter": half fixed, half random
            backoff = self.base_s * 2 ** min(attempt, 16)
            wanted = backoff * (1 - self.jitter) + backoff * self.jitter * rng()
        return min(wanted, self.max_wait_s)


NO_RETRIES = RetryPolicy(retries=0)

_policies: weakref.WeakKeyDictionary[Any, RetryPolicy] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def use_policy(lm: Any, policy: RetryPolicy) -> None:
    """Retry `lm`'s requests with `policy` (the facade does this for the LMs it builds, with
    `num_retries=0` on them so DSPy does not retry as well)."""
    with _lock:
        _policies[lm] = policy


def policy_for(lm: Any) -> RetryPolicy:
    with _lock:
        try:
            return _policies.get(lm, NO_RETRIES)
        except TypeError:  # an LM that cannot be weakly referenced was never registered
            return NO_RETRIES


def retry_after_seconds(exc: BaseException, now: datetime | None = None) -> float | None:
    """The provider's Retry-After in seconds, from the error or its causes, or None.

    DSPy's errors carry it parsed (`retry_after`); other exceptions (LiteLLM's, the OpenAI SDK's,
    httpx's) carry the response headers: `retry-after-ms` (OpenAI), `retry-after` in seconds or
    as an HTTP date.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parsed = _seconds(getattr(current, "retry_after", None))
        if parsed is not None:
            return parsed
        headers = _headers(current)
        if headers:
            milliseconds = _seconds(headers.get("retry-after-ms"))
            if milliseconds is not None:
                return milliseconds / 1000
            value = headers.get("retry-after")
            parsed = _seconds(value)
            if parsed is None and isinstance(value, str):
                parsed = _http_date_seconds(value, now)
            if parsed is not None:
                return parsed
        current = current.__cause__ or current.__context__
    return None


def call_with_retries(
    call: Callable[[], T],
    policy: RetryPolicy,
    deadline: float | None = None,
    *,
    retryable: Callable[[BaseException], bool] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    rng: Callable[[], float] = random.random,
) -> T:
    """`call()`, retried per `policy`; a wait that would end past `deadline` (on `clock`'s scale,
    `time.monotonic` like the run's budget) is not taken: BudgetExceededError(limit="max_time_s")."""
    is_retryable = retryable or _dspy_retryable
    attempt = 0
    while True:
        try:
            return call()
        except Exception as exc:
            if attempt >= policy.retries or not is_retryable(exc):
                raise
            wait = _allowed_wait(exc, attempt, policy, deadline, clock, rng)
        attempt += 1
        sleep(wait)


async def acall_with_retries(
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    deadline: float | None = None,
    *,
    retryable: Callable[[BaseException], bool] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
    rng: Callable[[], float] = random.random,
) -> T:
    is_retryable = retryable or _dspy_retryable
    attempt = 0
    while True:
        try:
            return await call()
        except Exception as exc:
            if attempt >= policy.retries or not is_retryable(exc):
                raise
            wait = _allowed_wait(exc, attempt, policy, deadline, clock, rng)
        attempt += 1
        await sleep(wait)


def _allowed_wait(
    exc: BaseException,
    attempt: int,
    policy: RetryPolicy,
    deadline: float | None,
    clock: Callable[[], float],
    rng: Callable[[], float],
) -> float:
    said = redact(f"{type(exc).__name__}: {str(exc)[:200]}", known_secrets(policy.secrets))
    hint = retry_after_seconds(exc)
    if hint is not None and hint > policy.max_wait_s:
        raise ProviderError(
            f"the provider refused the request ({said}) and asks for no retry "
            f"before {hint:,.0f} s, longer than max_retry_wait_s ({policy.max_wait_s:g} s), so it is not retried: "
            "raise max_retry_wait_s to wait that long, or try again later"
        ) from exc
    wait = policy.wait(exc, attempt, rng)
    if deadline is not None:
        left = deadline - clock()
        if wait >= left:
            raise BudgetExceededError(
                f"the time budget (max_time_s) has {max(left, 0.0):.1f} s left, and the provider's next retry "
                f"would come after {wait:.1f} s ({type(exc).__name__}): the request is not retried",
                limit="max_time_s",
            ) from exc
    logger.warning(
        "Retrying a failed LM request in %.1f s (attempt %d of %d): %s",
        wait,
        attempt + 1,
        policy.retries,
        said,
    )
    return wait


def _dspy_retryable(exc: BaseException) -> bool:
    from dspy.utils.exceptions import is_retryable_lm_error

    return bool(is_retryable_lm_error(exc))


def _headers(exc: BaseException) -> Mapping[str, Any] | None:
    for holder in (exc, getattr(exc, "response", None)):
        headers = getattr(holder, "headers", None)
        if headers is not None and hasattr(headers, "get"):
            if isinstance(headers, dict):  # plain dicts are case-sensitive; HTTP headers are not
                return {str(k).lower(): v for k, v in headers.items()}
            return headers
    return None


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        seconds = float(value)
    except (ValueError, OverflowError):
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _http_date_seconds(value: str, now: datetime | None) -> float | None:
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())
