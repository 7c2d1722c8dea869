"""Training items never share a task shape or a seed with the declared evaluation items."""

from __future__ import annotations

import pytest

from rlm.benchmarks.tasks import oolong_counting
from rlm.errors import ConfigurationError
from rlm.optimize import EVALUATION, Shape, check_disjoint, to_example, training_items


def test_training_items_take_turns_over_tasks_and_skip_held_out_shapes():
    items = training_items(8, size_tokens=500, tasks=("needle", "oolong"))
    assert len(items) == 8
    assert {item.task for item in items} == {"needle", "oolong"}
    assert all(Shape(item.task, item.kind) not in EVALUATION.shapes for item in items)
    assert all(item.seed not in EVALUATION.seeds for item in items)
    check_disjoint(items)  # what the trainer checks passes


def test_a_task_that_asks_only_held_out_questions_is_refused():
    with pytest.raises(ConfigurationError, match=r"counting.*held out"):
        training_items(2, size_tokens=500, tasks=("counting",))


def test_a_trainset_with_a_held_out_shape_is_refused():
    item = oolong_counting(500, seed=5)
    with pytest.raises(ConfigurationError, match="counting/count, held out"):
        check_disjoint([to_example(item, 5)])


def test_a_trainset_with_a_held_out_seed_is_refused():
    (example,) = training_items(1, size_tokens=500, tasks=("needle",))
    with pytest.raises(ConfigurationError, match="seed 9003, held out"):
        check_disjoint([example.copy(seed=9003)])


def test_training_seeds_step_over_the_held_out_range():
    items = training_items(3, size_tokens=500, tasks=("needle",), first_seed=EVALUATION.seeds.start - 1)
    assert [item.seed for item in items] == [
        EVALUATION.seeds.start - 1,
        EVALUATION.seeds.stop,
        EVALUATION.seeds.stop + 1,
    ]


def test_examples_without_their_shape_cannot_be_checked_and_are_refused():
    import dspy

    with pytest.raises(ConfigurationError, match="training_items"):
        check_disjoint([dspy.Example(query="q", context="c", answer="a").with_inputs("query", "context")])


def test_evaluation_items_come_from_the_declared_seeds():
    items = EVALUATION.items(2, 500, "counting")
    assert [i.query for i in items] == [oolong_counting(500, seed).query for seed in EVALUATION.seeds[:2]]
    with pytest.raises(ConfigurationError, match="not a held-out task"):
        EVALUATION.items(2, 500, "needle")


def test_the_far_evaluation_asks_about_code_no_training_task_makes():
    from rlm.benchmarks.paper.codeqa import codeqa
    from rlm.optimize import CODE_EVALUATION

    items = CODE_EVALUATION.items(2, 8000, "codeqa")
    assert [i.query for i in items] == [codeqa(8000, seed).query for seed in CODE_EVALUATION.seeds[:2]]
    assert all(Shape("codeqa", i.kind) in CODE_EVALUATION.shapes for i in items)
    check_disjoint(training_items(6, size_tokens=500), CODE_EVALUATION)  # the default trainset never touches it
    with pytest.raises(ConfigurationError, match=r"codeqa/.*held out"):
        check_disjoint([to_example(items[0], 5)], CODE_EVALUATION)
