"""Compile the RLM's step predictor with a DSPy optimizer: `optimize(rlm, trainset) -> Program`.

"bootstrap" (default) is DSPy's BootstrapFewShot: the RLM runs the training items, and each run
that earned its answer (`metric.founded_and_correct`) becomes a demo — its root's trajectory,
trimmed to key turns. "gepa" is DSPy's GEPA: a reflection model rewrites the step's
instructions from the runs' feedback; it needs many runs. Called by `rlm optimize` and by users.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import dspy

from rlm.engine.module import RLMModule
from rlm.engine.step import RLMStep
from rlm.errors import ConfigurationError
from rlm.optimize.demos import DemoShape, demo_from_trace, prompt_cost
from rlm.optimize.items import EVALUATION, HeldOut, check_disjoint
from rlm.optimize.metric import judge
from rlm.optimize.program_file import Program, model_name

if TYPE_CHECKING:
    from rlm.facade import RLM

OPTIMIZERS = ("bootstrap", "gepa")
# Tokens the demos may add to every step's prompt: the bundled model's window is 16k tokens and
# reads ~70 prompt tokens a second, so demos past this cost more than they can teach.
DEFAULT_MAX_DEMO_TOKENS = 2000


class TrajectoryBootstrap(dspy.BootstrapFewShot):
    """BootstrapFewShot whose demo of a successful run is the root's whole trajectory, trimmed.

    DSPy keeps one traced call per run, at random; for a multi-step REPL loop that is a reply out
    of its conversation. The root's last call holds the whole conversation in its `history`.
    """

    def __init__(
        self,
        metric: Callable[..., bool],
        max_demos: int,
        shape: DemoShape,
        on_error: Callable[[dspy.Example], None] = lambda example: None,
    ) -> None:
        self._shape = shape
        self._on_error = on_error  # a run that raised never reaches the metric; DSPy only logs it
        self._judged = False
        self._earned: tuple[list[Any], Any] | None = None  # the trace and trajectory of a run that scored

        def remembering(example: dspy.Example, prediction: Any, trace: Any = None) -> bool:
            self._judged = True
            earned = bool(metric(example, prediction, trace))
            self._earned = (list(trace), prediction.result.trajectory) if earned and trace is not None else None
            return earned

        super().__init__(metric=remembering, max_bootstrapped_demos=max_demos, max_labeled_demos=0, max_rounds=1)

    def _bootstrap_one_example(self, example: dspy.Example, round_idx: int = 0) -> bool:
        self._earned, self._judged = None, False
        kept = len(self.name2traces["step"])
        earned = bool(super()._bootstrap_one_example(example, round_idx))
        if not self._judged:
            self._on_error(example)
        if earned and self._earned is not None:
            trace, steps = self._earned
            self.name2traces["step"][kept:] = [demo_from_trace(trace, example.query, steps, self._shape)]
        return earned


def optimize(
    rlm: RLM,
    trainset: Sequence[dspy.Example],
    *,
    optimizer: str = "bootstrap",
    max_demos: int = 2,
    demo_shape: DemoShape | None = None,
    max_demo_tokens: int = DEFAULT_MAX_DEMO_TOKENS,
    held_out: HeldOut = EVALUATION,
    valset: Sequence[dspy.Example] | None = None,
    max_metric_calls: int = 12,
    reflection_lm: dspy.BaseLM | None = None,
    on_item: Callable[[dspy.Example, float, str], None] | None = None,
) -> Program:
    """Compile `rlm`'s step on `trainset` (from `training_items`) and return the program to save.

    The training runs use `rlm`'s model and settings (its `max_iterations`, sandbox, limits), with
    the root model for sub-calls. `on_item(example, score, why)` hears each training run's verdict.
    """
    if optimizer not in OPTIMIZERS:
        raise ConfigurationError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
    if not trainset:
        raise ConfigurationError("the trainset is empty: build one with rlm.optimize.training_items(count)")
    if max_demos < 1:
        raise ConfigurationError(f"max_demos must be at least 1, got {max_demos}")
    check_disjoint(trainset, held_out)
    if valset is not None:
        check_disjoint(valset, held_out)
    shape = demo_shape or DemoShape()
    verdicts: list[dict[str, Any]] = []

    def record(example: dspy.Example, score: float, why: str) -> None:
        verdicts.append({"task": example.task, "kind": example.kind, "seed": example.seed, "score": score, "why": why})
        if on_item is not None:
            on_item(example, score, why)

    def heard(example: dspy.Example, prediction: Any) -> tuple[float, str]:
        score, why = judge(example, prediction)
        record(example, score, why)
        return score, why

    def failed(example: dspy.Example) -> None:
        record(example, 0.0, "The run raised an error (DSPy logged it above), so it earned nothing.")

    student = RLMModule(rlm.config)  # no LMs of its own: optimizers copy it, and it runs on dspy.context's
    started = time.perf_counter()
    with dspy.context(lm=rlm.lm):
        if optimizer == "bootstrap":
            compiled = TrajectoryBootstrap(
                lambda example, prediction, trace=None: heard(example, prediction)[0] == 1.0, max_demos, shape, failed
            ).compile(student, trainset=list(trainset))
        else:
            compiled = _gepa(student, trainset, valset, heard, max_metric_calls, reflection_lm or rlm.lm)
    step = compiled.step
    dropped = _fit_demos(step, max_demo_tokens)
    baseline = RLMStep.instructions
    return Program.of(
        step,
        model=model_name(rlm.lm),
        optimizer=optimizer,
        baseline_instructions=baseline,
        trainset=[{"task": e.task, "kind": e.kind, "seed": e.seed} for e in trainset],
        runs=verdicts,
        demos_dropped_for_size=dropped,
        prompt_tokens_added=prompt_cost(step.signature.instructions, step.demos)
        + (len(step.signature.instructions) - len(baseline)) // 4,
        max_iterations=rlm.config.max_iterations,
        compile_seconds=round(time.perf_counter() - started, 1),
        dspy_version=dspy.__version__,
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )


def _fit_demos(step: dspy.Predict, max_tokens: int) -> int:
    """Drop demos from the end until they add at most `max_tokens` to each prompt; how many went."""
    dropped = 0
    while step.demos and prompt_cost(step.signature.instructions, step.demos) > max_tokens:
        step.demos = step.demos[:-1]
        dropped += 1
    return dropped


def _gepa(
    student: RLMModule,
    trainset: Sequence[dspy.Example],
    valset: Sequence[dspy.Example] | None,
    heard: Callable[[dspy.Example, Any], tuple[float, str]],
    max_metric_calls: int,
    reflection_lm: dspy.BaseLM,
) -> RLMModule:
    def metric(gold: dspy.Example, pred: Any, trace: Any = None, pred_name: Any = None, pred_trace: Any = None) -> Any:
        score, why = heard(gold, pred)
        return dspy.Prediction(score=score, feedback=why)

    gepa = dspy.GEPA(
        metric=metric,
        max_metric_calls=max_metric_calls,
        reflection_lm=reflection_lm,
        reflection_minibatch_size=min(3, len(trainset)),
        use_merge=False,
        num_threads=1,
        seed=0,
    )
    return gepa.compile(student, trainset=list(trainset), valset=list(valset) if valset is not None else None)
