"""The REPL loop of one RLM node, written once and driven either synchronously or with asyncio.

`NodeRun.plan()` is a generator: it yields what it needs (`Ask` the model, `Run` code) and gets
the answer back, so the loop holds the logic and the two drivers only perform effects. Events go
to the tree's bus; the loop has no special cases for graph, history or progress.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import dspy

from rlm.config import RLMConfig
from rlm.engine import prompts
from rlm.engine.calls import CallBudget, CallSite, aask_step, ask_step, model_name
from rlm.engine.describe import context_length, describe_context, shows_whole
from rlm.engine.parsing import TextFinal, count_code_blocks, cut_after_code, extract_code, find_text_final
from rlm.engine.result import StepRecord
from rlm.errors import MaxIterationsError
from rlm.events import EventBus, NodeFinished, NodeStarted, StepExecuted
from rlm.sandbox.base import ExecutionResult, Sandbox

# Answers up to this size on one line are values (a number, an id, a name): the kind small models
# invent. Longer answers are prose written from what the model read.
SHORT_ANSWER_CHARS = 100


@dataclass
class Tree:
    """What every node of one run shares."""

    config: RLMConfig
    predictor: dspy.Predict
    root_lm: dspy.BaseLM
    sub_lm: dspy.BaseLM
    bus: EventBus
    budget: CallBudget
    make_sandbox: Callable[[], Sandbox]
    _ids: Any = field(default_factory=itertools.count)
    _id_lock: threading.Lock = field(default_factory=threading.Lock)

    def new_node_id(self) -> str:
        with self._id_lock:
            return f"n{next(self._ids)}"


@dataclass(frozen=True)
class Ask:
    inputs: dict[str, Any]
    purpose: str = "step"


@dataclass(frozen=True)
class Run:
    code: str


@dataclass(frozen=True)
class NodeOutcome:
    answer: str
    finish_reason: str
    iterations: int
    trajectory: tuple[StepRecord, ...]


Plan = Generator[Ask | Run, Any, NodeOutcome]


class NodeRun:
    """One node of the tree: its own sandbox holding its `context`, and its loop."""

    def __init__(
        self, tree: Tree, query: str, context: Any, depth: int, parent_id: str | None, lm: dspy.BaseLM
    ) -> None:
        from rlm.engine.subcalls import HostFunctions  # subcalls creates NodeRuns: import late

        self.tree = tree
        self.query = query
        self.context = context
        self.depth = depth
        self.parent_id = parent_id
        self.lm = lm
        self.node_id = tree.new_node_id()
        self.site = CallSite(self.node_id, depth, tree.bus, tree.budget)
        self.host = HostFunctions(self)
        self.started = 0.0

    # --- the loop ------------------------------------------------------------------------------------
    def plan(self) -> Plan:
        config = self.tree.config
        limit = config.max_iterations
        context_info = (
            f"{describe_context(self.context)}\n"
            f"{prompts.sub_model_line(config.sub_prompt_chars, config.sub_model_note)}\n\n"
            f"{prompts.step_line(1, limit)}"
        )
        history: list[dict[str, str]] = []
        trajectory: list[StepRecord] = []
        runs: Counter[str] = Counter()
        reason = "max_iterations"
        told_to_answer = False
        # Small models answer with values they never saw: in step 1 before any output, or after
        # their code, in the same reply, before its output came back. An answer written out
        # literally that no output so far contains is refused once per node (in step 1 any such
        # answer, later only short value-like ones, so a long answer written from what the
        # model read is not held up). Answers computed by code are always accepted.
        guard_guess = not shows_whole(self.context)
        seen = [context_info]

        def unfounded(iteration: int, reply: str, answer: str) -> bool:
            nonlocal guard_guess
            value = answer.strip()
            if not guard_guess or not value or value not in reply or any(value in text for text in seen):
                return False
            if iteration > 1 and (len(value) > SHORT_ANSWER_CHARS or "\n" in value):
                return False
            guard_guess = False
            return True

        def ask(purpose: str = "step") -> Ask:
            return Ask({"query": self.query, "context_info": context_info, "history": list(history)}, purpose)

        for iteration in range(1, limit + 1):
            if self.tree.budget.exhausted:
                reason = "budget"
                break
            reply = yield ask()
            code = extract_code(reply)
            text_final = find_text_final(reply)
            output, error = "", None
            notes: list[str] = []
            repeats = 0
            if code is not None:
                key = " ".join(code.split())
                runs[key] += 1
                repeats = runs[key]
                result = yield Run(code)
                output, error = result.output, result.error
                seen.append(output)
                if count_code_blocks(reply) > 1:
                    notes.append(prompts.EXTRA_BLOCKS_NOTE)
                if result.final_answer is not None:
                    if not unfounded(iteration, reply, result.final_answer):
                        self._record(trajectory, iteration, reply, code, result.output, None)
                        return NodeOutcome(result.final_answer, "final", iteration, tuple(trajectory))
                    notes.append(prompts.GUESS_NOTE)
                    text_final = None
                if repeats > 1:
                    notes.append(prompts.REPEATED_NOTE)
            if text_final is not None and error is None:
                answer, final_error = yield from self._resolve_text_final(text_final)
                if answer is not None and not unfounded(iteration, reply, answer):
                    self._record(trajectory, iteration, reply, code or "", output, None)
                    return NodeOutcome(answer, "final", iteration, tuple(trajectory))
                error = final_error
                if answer is not None:
                    notes.append(prompts.GUESS_NOTE)
            elif code is None and text_final is None:
                notes.append(prompts.NO_CODE_NOTE)
            self._record(trajectory, iteration, reply, code or "", output, error)
            if repeats > config.max_repeated_steps:
                reason = "repeated"
            elif self.tree.budget.exhausted:
                reason = "budget"
            stopping = reason != "max_iterations" or iteration == limit
            closing = prompts.answer_now(limit, reason) if stopping else prompts.step_line(iteration + 1, limit)
            observation = prompts.observation(output, error, " ".join(notes), closing)
            history.append({"reply": cut_after_code(reply), "observation": observation})
            if stopping:
                told_to_answer = True
                break

        if config.strict and reason == "max_iterations":
            raise MaxIterationsError(
                f"Max iterations exceeded: node {self.node_id} (depth {self.depth}) used all {limit} steps "
                "without FINAL(...). Raise max_iterations, or drop strict=True to get a best-effort answer."
            )
        if not told_to_answer:  # stopped before a step (budget): say so in a last observation
            note = prompts.answer_now(limit, reason)
            if history:
                history[-1] = {**history[-1], "observation": f"{history[-1]['observation']}\n\n{note}"}
            else:
                context_info = f"{context_info}\n\n{note}"
        reply = yield ask("answer_now")
        answer = yield from self._last_answer(reply)
        return NodeOutcome(answer, reason, len(trajectory), tuple(trajectory))

    def _resolve_text_final(self, final: TextFinal) -> Generator[Run, Any, tuple[str | None, str | None]]:
        """A FINAL written as text: a variable it names wins over its literal text."""
        name = final.variable_name
        if name is not None:
            result: ExecutionResult = yield Run(f"FINAL_VAR({name!r})")
            if result.final_answer is not None:
                return result.final_answer, None
            if final.kind == "FINAL_VAR":
                return None, result.error
        if final.kind == "FINAL_VAR":
            return None, f"FINAL_VAR needs a variable name, got {final.argument!r}"
        return final.literal, None

    def _last_answer(self, reply: str) -> Generator[Run, Any, str]:
        text_final = find_text_final(reply)
        if text_final is not None:
            answer, _ = yield from self._resolve_text_final(text_final)
            if answer is not None:
                return answer
        code = extract_code(reply)
        if code is not None:
            result: ExecutionResult = yield Run(code)
            if result.final_answer is not None:
                return result.final_answer
        return reply.strip()

    def _record(
        self,
        trajectory: list[StepRecord],
        iteration: int,
        reply: str,
        code: str,
        output: str,
        error: str | None,
    ) -> None:
        trajectory.append(StepRecord(iteration, reply, code, output, error))
        self.tree.bus.emit(
            StepExecuted(
                self.node_id,
                self.depth,
                iteration,
                reply,
                code,
                output,
                error,
                time.perf_counter() - self.started,
            )
        )

    # --- drivers -------------------------------------------------------------------------------------
    def _begin(self) -> None:
        self.started = time.perf_counter()
        self.tree.bus.emit(
            NodeStarted(
                self.node_id,
                self.parent_id,
                self.depth,
                self.query,
                context_length(self.context),
                model_name(self.lm),
                "rlm",
                time.time(),
            )
        )

    def _end(self, outcome: NodeOutcome | None, error: BaseException | None) -> None:
        self.tree.bus.emit(
            NodeFinished(
                node_id=self.node_id,
                depth=self.depth,
                answer=outcome.answer if outcome else None,
                finish_reason=outcome.finish_reason if outcome else "error",
                iterations=outcome.iterations if outcome else 0,
                duration_s=time.perf_counter() - self.started,
                error=None if error is None else f"{type(error).__name__}: {error}",
            )
        )

    def run(self) -> NodeOutcome:
        self._begin()
        sandbox = self.tree.make_sandbox()
        stop = self.tree.config.step_stop
        outcome = None
        try:
            sandbox.start()
            sandbox.load(self.context)
            plan = self.plan()
            value: Any = None
            while True:
                effect = plan.send(value)
                if isinstance(effect, Ask):
                    value = ask_step(self.site, self.tree.predictor, self.lm, effect.inputs, effect.purpose, stop)
                else:
                    value = sandbox.execute(effect.code, self.host.call)
                    self.host.raise_fatal()
        except StopIteration as done:
            outcome = done.value
            return outcome
        except BaseException as exc:
            self._end(None, exc)
            raise
        finally:
            sandbox.close()
            if outcome is not None:
                self._end(outcome, None)

    async def arun(self) -> NodeOutcome:
        self._begin()
        sandbox = self.tree.make_sandbox()
        stop = self.tree.config.step_stop
        loop = asyncio.get_running_loop()

        def bridge(fn: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
            # Runs on the sandbox thread; the sub-call itself is awaited on the event loop.
            return asyncio.run_coroutine_threadsafe(self.host.acall(fn, args, kwargs), loop).result()

        outcome = None
        try:
            await asyncio.to_thread(sandbox.start)
            await asyncio.to_thread(sandbox.load, self.context)
            plan = self.plan()
            value: Any = None
            while True:
                effect = plan.send(value)
                if isinstance(effect, Ask):
                    value = await aask_step(
                        self.site, self.tree.predictor, self.lm, effect.inputs, effect.purpose, stop
                    )
                else:
                    value = await asyncio.to_thread(sandbox.execute, effect.code, bridge)
                    self.host.raise_fatal()
        except StopIteration as done:
            outcome = done.value
            return outcome
        except BaseException as exc:
            self._end(None, exc)
            raise
        finally:
            await asyncio.to_thread(sandbox.close)
            if outcome is not None:
                self._end(outcome, None)
