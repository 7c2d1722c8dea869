"""Bad input gets a clear error naming the problem; a failed run still says how far it got."""

from __future__ import annotations

import pytest

from rlm import RLM, ConfigurationError, ContextError, NodeFinished
from rlm.models.retry import policy_for


class Opaque:
    pass


@pytest.mark.parametrize(
    ("context", "where"),
    [
        ({"a.txt": ["fine", {"deep": [1, Opaque()]}]}, "context['a.txt'][1]['deep'][1] is a Opaque"),
        ([["x"], ("y", b"bytes")], "context[1][1] is a bytes"),
        ({"a": {1: "int key"}}, "context['a'] has a key 1 that is not a string"),
    ],
)
def test_a_nested_value_that_is_not_json_like_is_named_by_its_path(make_lm, context, where):
    lm, engine = make_lm([])
    with pytest.raises(ContextError) as caught:
        RLM(model=lm).run("q", context)
    assert where in str(caught.value)
    assert engine.calls == []


@pytest.mark.parametrize("timeout", [-1, 0, "60", True])
def test_a_timeout_that_is_not_positive_seconds_is_refused(make_lm, timeout):
    lm, _ = make_lm([])
    with pytest.raises(ConfigurationError, match="timeout must be positive seconds"):
        RLM(model=lm, timeout=timeout)


@pytest.mark.parametrize(
    "settings", [{"num_retries": 5}, {"temperature": 0.2}, {"max_retry_wait_s": 5}, {"api_base": "http://x/v1"}]
)
def test_lm_settings_with_only_lm_objects_are_refused_not_dropped(make_lm, settings):
    lm, _ = make_lm([])
    with pytest.raises(ConfigurationError, match=f"{next(iter(settings))} configure models that RLM builds"):
        RLM(model=lm, **settings)


def test_lm_settings_apply_to_the_model_given_by_name_beside_an_lm_object(make_lm):
    lm, _ = make_lm([])
    rlm = RLM(model="openai/m", recursive_model=lm, api_base="http://127.0.0.1:9/v1", num_retries=5)
    assert rlm.recursive_lm is lm and policy_for(rlm.lm).retries == 5


def test_a_failed_run_reports_the_steps_it_finished(make_lm):
    lm, _ = make_lm(["```python\nx = 1\n```"])  # the second request finds no scripted reply
    events: list[object] = []
    with pytest.raises(Exception, match="ran out of replies"):
        RLM(model=lm, on_event=events.append).run("q", "abc")
    (finished,) = [e for e in events if isinstance(e, NodeFinished)]
    assert finished.finish_reason == "error" and finished.iterations == 1
