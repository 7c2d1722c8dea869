"""Provider retries inside a run: Retry-After waits count against max_time_s; the facade's LMs use our policy."""

from __future__ import annotations

import time

import pytest

from rlm import RLM, ProviderError
from rlm.models.retry import policy_for


def computed_answer(body):
    return "```python\nFINAL(len(context))\n```"


def test_a_retry_that_would_overrun_max_time_s_ends_the_run_for_the_time_budget(openai_server):
    server = openai_server(computed_answer, rate_limited=["30"])
    model = RLM(model="openai/test-model", api_base=server.base_url, max_time_s=5)
    result = model.run("How long is it?", "abcd")
    # the first step's 429 asked for 30 s, past the budget: not retried; the last step answers
    assert (result.finish_reason, result.answer) == ("budget_time", "4")
    assert len(server.requests) == 2


def test_a_rate_limited_step_is_retried_within_the_run(openai_server):
    server = openai_server(computed_answer, rate_limited=["0", "0"])
    result = RLM(model="openai/test-model", api_base=server.base_url).run("How long is it?", "abcd")
    assert (result.finish_reason, result.answer) == ("final", "4")
    assert len(server.requests) == 3


def test_the_facades_lms_retry_with_our_policy_and_not_dspys(openai_server, make_lm):
    server = openai_server(computed_answer)
    model = RLM(model="openai/test-model", api_base=server.base_url, num_retries=5, max_retry_wait_s=20)
    assert model.lm.num_retries == 0
    assert (policy_for(model.lm).retries, policy_for(model.lm).max_wait_s) == (5, 20)
    lm, _ = make_lm([])
    assert policy_for(RLM(model=lm).lm).retries == 0  # an LM passed in keeps DSPy's own retries


def test_the_bundled_model_s_read_timeouts_are_not_retried_but_other_servers_are(openai_server):
    # llama.cpp's server goes on with a request its client gave up on, one request at a time: a
    # retry would queue behind it and do its work again.
    slow = openai_server(lambda body: "late", delay_s=1.5)
    bundled = RLM(model="local", api_base=slow.base_url, timeout=0.3, num_retries=2)
    with pytest.raises(ProviderError):
        bundled.completion("q", "ctx")
    elsewhere = openai_server(lambda body: "late", delay_s=1.5)
    other = RLM(model="openai/m", api_base=elsewhere.base_url, timeout=0.3, num_retries=2, max_retry_wait_s=0.01)
    with pytest.raises(ProviderError):
        other.completion("q", "ctx")
    time.sleep(1.6)  # the abandoned requests arrive in full
    assert (len(slow.requests), len(elsewhere.requests)) == (1, 3)
