"""Compile on a tiny trainset with a scripted model, save, load: the demos reach the step's prompt."""

from __future__ import annotations

import json

import pytest

from rlm import RLM
from rlm.benchmarks.tasks import needle
from rlm.errors import ConfigurationError
from rlm.optimize import DemoShape, optimize, read_program, to_example, training_items
from rlm.testing import scripted_lm
from tests.optimize.conftest import SEARCH_REPLY, needle_solver


def small_rlm(lm):
    return RLM(model=lm, max_iterations=4)


@pytest.fixture
def trainset():
    return training_items(3, size_tokens=600, tasks=("needle", "multidoc"))


def test_bootstrap_keeps_only_runs_that_earned_their_answer(trainset):
    lm, _ = scripted_lm(needle_solver)
    program = optimize(small_rlm(lm), trainset, max_demos=2)
    verdicts = {(run["task"], run["seed"]): run["score"] for run in program.info["runs"]}
    assert verdicts == {("needle", 100): 1.0, ("multidoc", 101): 0.0, ("needle", 102): 1.0}
    assert len(program.demos) == 2
    demo = program.demos[0]
    # The demo is the run as the model lived it: the search turn and its output, then the answer.
    assert demo["history"][0]["reply"].startswith(SEARCH_REPLY.split("\n")[0])
    assert "FOUND" in demo["history"][0]["observation"]
    assert "FINAL(" in demo["reply"] and "magic number" in demo["query"]
    assert program.info["prompt_tokens_added"] > 0
    assert program.instructions is None  # bootstrap leaves the library's instructions alone


def test_a_saved_program_reaches_the_step_prompt_of_rlm_program(tmp_path, trainset):
    lm, _ = scripted_lm(needle_solver)
    path = optimize(small_rlm(lm), trainset, max_demos=1).save(tmp_path / "program.json")
    assert json.loads(path.read_text())["version"] == 1

    user_lm, engine = scripted_lm(needle_solver)
    item = needle(600, seed=4242)
    result = RLM(model=user_lm, max_iterations=4, program=path).run(item.query, item.context)
    assert result.answer == item.answer
    first_call = engine.calls[0]
    demo = read_program(path).demos[0]
    contents = [m["content"] for m in first_call]
    # system, then the demo's task, its turn and observation, its answer, then the real task
    assert demo["history"][0]["observation"] in contents
    assert demo["reply"] in contents
    assert contents.index(demo["reply"]) < len(contents) - 1
    assert first_call[-1]["role"] == "user" and item.query in first_call[-1]["content"]


def test_without_a_program_the_prompt_has_no_demos():
    lm, engine = scripted_lm(needle_solver)
    item = needle(600, seed=4242)
    RLM(model=lm, max_iterations=4).run(item.query, item.context)
    assert [m["role"] for m in engine.calls[0]] == ["system", "user"]


def test_demos_past_the_token_budget_are_dropped(trainset):
    lm, _ = scripted_lm(needle_solver)
    program = optimize(small_rlm(lm), trainset, max_demos=2, max_demo_tokens=1)
    assert program.demos == () and program.info["demos_dropped_for_size"] == 2


def test_demo_turns_are_trimmed_to_the_demo_shape(trainset):
    lm, _ = scripted_lm(needle_solver)
    program = optimize(small_rlm(lm), trainset, max_demos=1, demo_shape=DemoShape(max_turns=0))
    assert program.demos[0]["history"] == []


def test_the_trainer_refuses_held_out_items_before_any_run():
    lm, engine = scripted_lm([])  # any LM call would fail: "ran out of replies"
    item = needle(600, seed=9001)
    with pytest.raises(ConfigurationError, match="seed 9001, held out"):
        optimize(small_rlm(lm), [to_example(item, 9001)])
    assert engine.calls == []


def test_an_unknown_optimizer_is_named():
    lm, _ = scripted_lm([])
    with pytest.raises(ConfigurationError, match="bootstrap, gepa"):
        optimize(small_rlm(lm), training_items(1, 600), optimizer="mipro")


def test_gepa_keeps_an_instruction_that_scores_better_and_the_program_carries_it(tmp_path):
    taught = "Search `context` with code, print what you find, then FINAL(answer). (taught by reflection)"

    def model(messages):
        if any("new_instruction" in m["content"] for m in messages):  # GEPA's reflection call (JSON adapter)
            return json.dumps({"new_instruction": taught})
        if messages[0]["content"] == taught:
            return needle_solver(messages)
        return 'FINAL("I do not know")'  # the library's own instructions: this model never solves it

    lm, _ = scripted_lm(model)
    program = optimize(small_rlm(lm), training_items(2, 600, tasks=("needle",)), optimizer="gepa", max_metric_calls=8)
    assert program.instructions == taught and program.optimizer == "gepa"

    user_lm, engine = scripted_lm(needle_solver)
    item = needle(600, seed=4242)
    RLM(model=user_lm, max_iterations=4, program=program.save(tmp_path / "p.json")).run(item.query, item.context)
    assert engine.calls[0][0] == {"role": "system", "content": taught}


def test_a_training_run_that_raises_is_recorded_as_not_earned():
    lm, _ = scripted_lm([])  # the scripted LM has no reply: the run raises
    program = optimize(small_rlm(lm), training_items(1, 600, tasks=("needle",)))
    (run,) = program.info["runs"]
    assert run["score"] == 0.0 and "raised an error" in run["why"]
    assert program.demos == ()
