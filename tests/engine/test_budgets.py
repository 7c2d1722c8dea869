"""Budgets over the whole tree in tokens, USD and time, next to `max_llm_calls`.

The scripted LM reports 100 prompt + 20 completion tokens per call; a model name with a listed
price makes calls cost money (no request leaves the machine: the engine is scripted).
"""

from __future__ import annotations

import pytest

from rlm import RLM, BudgetExceededError, ConfigurationError, NodeFinished
from rlm.events import LimitReached
from tests.conftest import last_user_message


def code(src: str) -> str:
    return f"Running this.\n```python\n{src}\n```"


SPENDER = code(
    "n = 0\nfor i in range(50):\n    try:\n        llm_query('x')\n        n += 1\n"
    "    except Exception:\n        pass\nprint(n)"
)


def test_a_token_budget_stops_the_run_with_one_last_answer(make_lm):
    root, root_engine = make_lm([SPENDER, code("FINAL('partial')")])
    sub, sub_engine = make_lm(lambda m: "ok", model="scripted/sub")
    events: list[object] = []
    result = RLM(model=root, recursive_model=sub, max_tokens_total=400, on_event=events.append).run("q", "ctx")
    # 120 tokens a call: the root's step and two sub-calls reach 360, the third reaches 480 >= 400.
    assert len(sub_engine.calls) == 3
    assert (result.answer, result.finish_reason) == ("partial", "budget_tokens")
    assert "token budget" in last_user_message(root_engine.calls[1])
    assert any(isinstance(e, LimitReached) and e.limit == "max_tokens_total" for e in events)
    assert [e.finish_reason for e in events if isinstance(e, NodeFinished)] == ["budget_tokens"]


def test_a_cost_budget_counts_the_price_of_every_call(make_lm):
    root, _ = make_lm([SPENDER, code("FINAL('partial')")], model="openai/gpt-4o-mini")
    sub, sub_engine = make_lm(lambda m: "ok", model="openai/gpt-4o-mini")
    # gpt-4o-mini: $0.15 / $0.60 per million tokens: 100 + 20 tokens cost $0.000027.
    result = RLM(model=root, recursive_model=sub, max_cost_usd=0.0001).run("q", "ctx")
    assert result.finish_reason == "budget_cost"
    assert len(sub_engine.calls) == 3  # 4 calls reach $0.000108
    assert result.cost is not None and 0.0001 <= result.cost < 0.0002


def test_a_time_budget_ends_the_run_in_time(make_lm):
    root, _ = make_lm([SPENDER, code("FINAL('partial')")])
    sub, sub_engine = make_lm(lambda m: "ok", model="scripted/sub", delay_s=0.3)
    result = RLM(model=root, recursive_model=sub, max_time_s=1.0).run("q", "ctx")
    assert result.finish_reason == "budget_time"
    assert 2 <= len(sub_engine.calls) <= 5
    assert result.wall_time_s < 4


def test_children_share_what_is_left(make_lm):
    root, _ = make_lm([code("print(recursive_llm('child', context))"), code("FINAL('root')")])

    def sub_reply(messages):
        return SPENDER if messages[0]["role"] == "system" else "ok"

    sub, _ = make_lm(sub_reply, model="scripted/sub")
    events: list[object] = []
    result = RLM(model=root, recursive_model=sub, max_tokens_total=600, on_event=events.append).run("q", "ctx")
    finished = {e.depth: e.finish_reason for e in events if isinstance(e, NodeFinished)}
    assert finished == {1: "budget_tokens", 0: "budget_tokens"}
    assert result.answer == "root"
    assert result.prompt_tokens + result.completion_tokens <= 600 + 2 * 120  # crossing call + last answer


def test_strict_raises_with_the_partial_answer(make_lm):
    root, _ = make_lm([SPENDER, code("FINAL('partial')")])
    sub, _ = make_lm(lambda m: "ok", model="scripted/sub")
    with pytest.raises(BudgetExceededError) as caught:
        RLM(model=root, recursive_model=sub, max_tokens_total=400, strict=True).run("q", "ctx")
    assert caught.value.limit == "max_tokens_total" and caught.value.partial_answer == "partial"
    assert "max_tokens_total" in str(caught.value)


@pytest.mark.parametrize("setting", ["max_tokens_total", "max_cost_usd", "max_time_s"])
@pytest.mark.parametrize("value", [0, -1, "10", True])
def test_budgets_must_be_positive_numbers(make_lm, setting, value):
    lm, _ = make_lm(["FINAL(x)"])
    with pytest.raises(ConfigurationError, match=setting):
        RLM(model=lm, **{setting: value})


def test_a_refused_sub_call_names_the_budget_that_refused_it(make_lm):
    root, root_engine = make_lm([SPENDER, code("FINAL('partial')")])
    sub, _ = make_lm(lambda m: "ok", model="scripted/sub")
    events: list[object] = []
    RLM(model=root, recursive_model=sub, max_tokens_total=400, on_event=events.append).run("q", "ctx")
    assert {e.limit for e in events if isinstance(e, LimitReached)} == {"max_tokens_total"}
    assert "[limit max_tokens_total]" in last_user_message(root_engine.calls[1])
