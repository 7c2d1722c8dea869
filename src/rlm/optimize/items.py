"""Training items for `rlm optimize`, and the held-out evaluation items they must never touch.

Items come from the seeded generators of `rlm.benchmarks.tasks`. Each carries its task shape
(generator and question kind) and seed, so `check_disjoint` can refuse a trainset that shares a
shape or a seed with the declared evaluation items. Called by `rlm.optimize.compile` and the CLI.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import dspy

from rlm.benchmarks.paper.codeqa import KINDS as CODEQA_KINDS
from rlm.benchmarks.paper.codeqa import codeqa
from rlm.benchmarks.paper.item import PaperItem
from rlm.benchmarks.tasks import TASKS, Item
from rlm.errors import ConfigurationError


@dataclass(frozen=True)
class Shape:
    """A task shape: which generator, and which kind of question it asks."""

    task: str
    kind: str

    def __str__(self) -> str:
        return f"{self.task}/{self.kind}"


@dataclass(frozen=True)
class HeldOut:
    """Evaluation items declared up front: their shapes and generator seeds are off limits for training."""

    name: str
    shapes: frozenset[Shape]
    seeds: range

    def items(self, count: int, size_tokens: int, task: str) -> list[Item | PaperItem]:
        """The first `count` evaluation items of `task` (one of the held-out shapes' generators)."""
        if task not in {shape.task for shape in self.shapes}:
            raise ConfigurationError(f"{task!r} is not a held-out task of {self.name}: choose one of {self._tasks()}")
        if count > len(self.seeds):
            raise ConfigurationError(f"{self.name} declares {len(self.seeds)} seeds; asked for {count} items")
        return [EVALUATION_GENERATORS[task](size_tokens, seed) for seed in self.seeds[:count]]

    def _tasks(self) -> str:
        return ", ".join(sorted({shape.task for shape in self.shapes}))


# The items bench/optimize_gain.py evaluates on: counting questions ("how many records have label X").
# The oolong generator asks the same question for some seeds, so that shape is held out as well.
EVALUATION = HeldOut(
    name="the optimizer's evaluation (bench/optimize_gain.py)",
    shapes=frozenset({Shape("counting", "count"), Shape("oolong", "count")}),
    seeds=range(9000, 9100),
)

# A shape far from every training task: questions about real code (the standard library's source,
# a dict of files; answers read with `ast`). No training generator makes code or asks about it, so
# a gain here would be the demonstrations' general lessons (read the context, compute, FINAL), not
# a near copy of a trained question.
CODE_EVALUATION = HeldOut(
    name="the optimizer's far evaluation (bench/optimize_gain.py --held-out codeqa)",
    shapes=frozenset(Shape("codeqa", kind) for kind in CODEQA_KINDS),
    seeds=range(9100, 9200),
)

EVALUATION_GENERATORS: dict[str, Callable[[int, int], Item | PaperItem]] = {**TASKS, "codeqa": codeqa}

DEFAULT_TASKS = ("needle", "multidoc", "oolong")
DEFAULT_FIRST_SEED = 100


def to_example(item: Item | PaperItem, seed: int) -> dspy.Example:
    """A DSPy example of one generated item; the shape and seed travel with it for `check_disjoint`."""
    return dspy.Example(
        query=item.query,
        context=item.context,
        answer=item.answer,
        task=item.task if isinstance(item, Item) else item.benchmark,
        kind=item.kind,
        seed=seed,
    ).with_inputs("query", "context")


def training_items(
    count: int,
    size_tokens: int = 8000,
    tasks: Sequence[str] = DEFAULT_TASKS,
    first_seed: int = DEFAULT_FIRST_SEED,
    held_out: HeldOut = EVALUATION,
) -> list[dspy.Example]:
    """`count` items taking turns over `tasks`, seeds counting up from `first_seed`.

    Seeds and shapes the held-out set declares are skipped (oolong asks a held-out question for
    some seeds); a task whose only shape is held out is refused.
    """
    if count < 1:
        raise ConfigurationError(f"the trainset needs at least one item, got count={count}")
    unknown = [task for task in tasks if task not in TASKS]
    if unknown or not tasks:
        raise ConfigurationError(f"unknown training task(s) {unknown}: choose from {', '.join(TASKS)}")
    only_held_out = [task for task in tasks if _single_shape(task) in held_out.shapes]
    if only_held_out:
        raise ConfigurationError(
            f"task(s) {', '.join(only_held_out)} ask only questions held out for {held_out.name}: "
            f"train on other tasks (e.g. {', '.join(DEFAULT_TASKS)})"
        )
    examples: list[dspy.Example] = []
    seed = first_seed
    while len(examples) < count:
        for task in tasks:
            if len(examples) == count:
                break
            seed = _next_free_seed(seed, held_out)
            item = TASKS[task](size_tokens, seed)
            if Shape(item.task, item.kind) not in held_out.shapes:
                examples.append(to_example(item, seed))
            seed += 1
        if seed - first_seed > 100 * count:  # cannot happen with today's generators; never loop forever
            raise ConfigurationError(f"could not find {count} training items of {tasks} outside {held_out.name}")
    return examples


def check_disjoint(trainset: Iterable[dspy.Example], held_out: HeldOut = EVALUATION) -> None:
    """Refuse a trainset that shares a task shape or a seed with the held-out evaluation items."""
    for index, example in enumerate(trainset):
        fields = {name: example.get(name) for name in ("task", "kind", "seed")}
        if any(value is None for value in fields.values()):
            raise ConfigurationError(
                f"training example {index} has no task/kind/seed, so its overlap with {held_out.name} cannot be "
                "checked: build examples with rlm.optimize.training_items (or to_example)"
            )
        shape = Shape(str(fields["task"]), str(fields["kind"]))
        if shape in held_out.shapes:
            raise ConfigurationError(
                f"training example {index} has the shape {shape}, held out for {held_out.name}: "
                "train on other tasks, or the evaluation measures what it was trained on"
            )
        if fields["seed"] in held_out.seeds:
            raise ConfigurationError(
                f"training example {index} uses seed {fields['seed']}, held out for {held_out.name} "
                f"(seeds {held_out.seeds.start}-{held_out.seeds.stop - 1}): choose seeds outside that range"
            )


def _single_shape(task: str) -> Shape | None:
    """The one shape of a generator that asks a single kind of question (None for oolong, which rotates)."""
    kinds = {TASKS[task](200, seed).kind for seed in range(4)}
    return Shape(task, kinds.pop()) if len(kinds) == 1 else None


def _next_free_seed(seed: int, held_out: HeldOut) -> int:
    while seed in held_out.seeds:
        seed += 1
    return seed
