"""RLMModule is a real DSPy module: its step predictor is visible, saved, loaded and optimised."""

from __future__ import annotations

import re

import dspy

from rlm import RLMConfig, RLMModule


def counting_reply(messages):
    """Answers like a model that knows how to count: code that counts the asked letter."""
    task = [m["content"] for m in messages if m["role"] == "user" and m["content"].startswith("Query:")][-1]
    letter = re.search(r"letter (\w)", task).group(1)
    return f"```python\nFINAL(str(context.count({letter!r})))\n```"


def test_the_action_step_is_a_named_predictor():
    module = RLMModule(RLMConfig())
    assert [name for name, _ in module.named_predictors()] == ["step"]
    assert isinstance(module.step, dspy.Predict)


def test_save_and_load_round_trip_keeps_demos_and_instructions(tmp_path):
    module = RLMModule(RLMConfig())
    demo = dspy.Example(query="q", context_info="info", history=[], reply="FINAL(1)")
    module.step.demos = [demo]
    path = tmp_path / "rlm.json"
    module.save(str(path))
    loaded = RLMModule(RLMConfig())
    loaded.load(str(path))
    assert loaded.step.demos[0]["reply"] == "FINAL(1)"
    assert loaded.step.signature.instructions == module.step.signature.instructions


def test_module_uses_dspy_configured_lm_when_none_given(make_lm):
    lm, _ = make_lm(["FINAL(configured)"])
    with dspy.context(lm=lm):
        prediction = RLMModule(RLMConfig())(query="q", context="c")
    assert prediction.answer == "configured"
    assert prediction.result.finish_reason == "final"


def test_bootstrap_few_shot_compiles_the_module_and_the_demos_reach_the_prompt(make_lm):
    lm, engine = make_lm(counting_reply)
    trainset = [
        dspy.Example(query="How many times does the letter a occur?", context="banana", answer="3"),
        dspy.Example(query="How many times does the letter b occur?", context="bob and bill", answer="3"),
    ]
    trainset = [ex.with_inputs("query", "context") for ex in trainset]
    optimizer = dspy.BootstrapFewShot(
        metric=lambda ex, pred, trace=None: ex.answer == pred.answer,
        max_bootstrapped_demos=2,
        max_labeled_demos=0,
    )
    compiled = optimizer.compile(RLMModule(RLMConfig(), lm), trainset=trainset)
    assert len(compiled.step.demos) == 2
    assert all("FINAL" in demo["reply"] for demo in compiled.step.demos)

    engine.calls.clear()
    prediction = compiled(query="How many times does the letter n occur?", context="banana nn")
    assert prediction.answer == "4"
    prompt_roles = [m["role"] for m in engine.calls[0]]
    assert prompt_roles == ["system", "user", "assistant", "user", "assistant", "user"]
