"""Provider retries: Retry-After honoured (seconds and HTTP dates), jittered, capped, within the time budget.

The HTTP tests send real requests through `dspy.LM` to a local server that answers 429 with
Retry-After; waits go to an injected `sleep` that records them, so no test waits or reads the clock.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import dspy
import pytest

from rlm.errors import BudgetExceededError, ConfigurationError, ProviderError
from rlm.models.resolve import build_lm
from rlm.models.retry import (
    NO_RETRIES,
    RetryPolicy,
    acall_with_retries,
    call_with_retries,
    policy_for,
    retry_after_seconds,
    use_policy,
)


class Hinted(Exception):
    def __init__(self, retry_after=None, headers=None):
        super().__init__("rate limited")
        self.retry_after = retry_after
        if headers is not None:
            self.headers = headers


def always(_exc):
    return True


@pytest.fixture
def rate_limited(openai_server):
    """A server whose first requests get 429 with the given Retry-After values, and an LM on it
    with DSPy's own retries off (as the facade builds them)."""

    def start(*retry_after):
        server = openai_server(lambda body: "answered", rate_limited=list(retry_after))
        return server, build_lm("openai/test-model", api_base=server.base_url, num_retries=0)

    return start


def recorder():
    waits: list[float] = []
    return waits, waits.append


# --- the waits -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("draw", [0.0, 0.5, 0.999])
def test_a_retry_after_is_a_floor_spread_upwards_by_the_jitter(draw):
    wait = RetryPolicy(jitter=0.25).wait(Hinted(retry_after=8.0), attempt=0, rng=lambda: draw)
    assert wait == pytest.approx(8.0 * (1 + 0.25 * draw))


def test_no_wait_is_longer_than_the_cap():
    policy = RetryPolicy(max_wait_s=60)
    assert policy.wait(Hinted(retry_after=3600), 0, rng=lambda: 0.0) == 60
    assert policy.wait(Hinted(), attempt=12, rng=lambda: 1.0) == 60


def test_without_a_hint_the_backoff_doubles_with_jitter():
    policy = RetryPolicy(base_s=1.0, jitter=0.5)
    low = [policy.wait(Hinted(), attempt, rng=lambda: 0.0) for attempt in range(3)]
    high = [policy.wait(Hinted(), attempt, rng=lambda: 1.0) for attempt in range(3)]
    assert low == [0.5, 1.0, 2.0] and high == [1.0, 2.0, 4.0]


def test_retry_after_is_read_in_seconds_milliseconds_or_as_an_http_date():
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    assert retry_after_seconds(Hinted(headers={"Retry-After": "7"}), now) == 7
    assert retry_after_seconds(Hinted(headers={"retry-after-ms": "1500", "retry-after": "9"}), now) == 1.5
    date = format_datetime(now + timedelta(seconds=42), usegmt=True)
    assert retry_after_seconds(Hinted(headers={"Retry-After": date}), now) == 42
    past = format_datetime(now - timedelta(seconds=42), usegmt=True)
    assert retry_after_seconds(Hinted(headers={"Retry-After": past}), now) == 0
    assert retry_after_seconds(Hinted(headers={"Retry-After": "soon"}), now) is None
    wrapped = RuntimeError("outer")
    wrapped.__cause__ = Hinted(retry_after=3.0)
    assert retry_after_seconds(wrapped) == 3.0


def test_bad_settings_are_refused_with_their_names():
    with pytest.raises(ConfigurationError, match="max_retry_wait_s must be positive"):
        RetryPolicy(max_wait_s=0)
    with pytest.raises(ConfigurationError, match="num_retries must be a non-negative integer"):
        RetryPolicy(retries=-1)


def test_only_registered_lms_get_a_policy(make_lm):
    lm, _ = make_lm([])
    assert policy_for(lm) is NO_RETRIES
    use_policy(lm, RetryPolicy(retries=5))
    assert policy_for(lm).retries == 5


# --- real requests -------------------------------------------------------------------------------------
def test_a_429_is_retried_after_its_retry_after(rate_limited):
    server, lm = rate_limited("2", None)
    waits, sleep = recorder()
    answer = call_with_retries(lambda: lm("hi"), RetryPolicy(jitter=0.25), sleep=sleep, rng=lambda: 0.5)
    assert answer == ["answered"] and len(server.requests) == 3
    # the hint, spread by the jitter; then (no header) the backoff of a second attempt
    assert waits == [pytest.approx(2 * 1.125), pytest.approx(2 * 0.75 + 2 * 0.25 * 0.5)]


def test_an_http_date_retry_after_is_honoured(rate_limited):
    when = datetime.now(timezone.utc) + timedelta(seconds=30)
    server, lm = rate_limited(format_datetime(when, usegmt=True))
    waits, sleep = recorder()
    assert call_with_retries(lambda: lm("hi"), RetryPolicy(jitter=0.0), sleep=sleep) == ["answered"]
    assert len(server.requests) == 2
    assert 25 <= waits[0] <= 30  # the date has one-second resolution and time passed since it was written


def test_a_retry_after_beyond_the_cap_ends_the_retries_at_once_and_names_the_wait(rate_limited):
    # Sent after the cap instead, the request would come before the time the provider named, be
    # refused again, and spend an attempt.
    server, lm = rate_limited("3600")
    waits, sleep = recorder()
    with pytest.raises(ProviderError, match=r"no retry before 3,600 s, longer than max_retry_wait_s \(60 s\)"):
        call_with_retries(lambda: lm("hi"), RetryPolicy(max_wait_s=60), sleep=sleep)
    assert waits == [] and len(server.requests) == 1


def test_a_retry_that_would_overrun_the_time_budget_is_not_attempted(rate_limited):
    server, lm = rate_limited("30")
    waits, sleep = recorder()
    clock = iter([100.0]).__next__
    with pytest.raises(BudgetExceededError, match="max_time_s") as raised:
        call_with_retries(lambda: lm("hi"), RetryPolicy(), deadline=110.0, sleep=sleep, clock=clock)
    assert raised.value.limit == "max_time_s" and isinstance(raised.value.__cause__, dspy.LMRateLimitError)
    assert waits == [] and len(server.requests) == 1


def test_the_error_comes_back_once_the_retries_are_spent(rate_limited):
    server, lm = rate_limited("1", "1", "1")
    waits, sleep = recorder()
    with pytest.raises(dspy.LMRateLimitError):
        call_with_retries(lambda: lm("hi"), RetryPolicy(retries=2), sleep=sleep)
    assert len(waits) == 2 and len(server.requests) == 3


def test_an_error_that_is_not_transient_is_not_retried(openai_server):
    server = openai_server(lambda body: "answered", unknown_models={"missing"})
    lm = build_lm("openai/missing", api_base=server.base_url, num_retries=0)
    waits, sleep = recorder()
    with pytest.raises(dspy.LMError):
        call_with_retries(lambda: lm("hi"), RetryPolicy(), sleep=sleep)
    assert waits == [] and len(server.requests) == 1


async def test_async_requests_are_retried_the_same_way(rate_limited):
    server, lm = rate_limited("4")
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    answer = await acall_with_retries(lambda: lm.acall("hi"), RetryPolicy(jitter=0.0), sleep=sleep)
    assert answer == ["answered"] and waits == [4.0] and len(server.requests) == 2


def test_what_is_retryable_can_be_decided_by_the_caller():
    waits, sleep = recorder()
    attempts = []

    def flaky():
        attempts.append(1)
        if len(attempts) < 2:
            raise Hinted(retry_after=0.5)
        return "ok"

    assert call_with_retries(flaky, RetryPolicy(jitter=0.0), retryable=always, sleep=sleep) == "ok"
    assert waits == [0.5]
