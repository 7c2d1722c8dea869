"""Provider retries inside a run: Retry-After waits count against max_time_s; the facade's LMs use our policy."""

from __future__ import annotations

from rlm import RLM
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
