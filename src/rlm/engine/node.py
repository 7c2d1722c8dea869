"""The REPL loop of one RLM node, written once and driven either synchronously or with asyncio.

`NodeRun.plan()` is a generator: it yields what it needs (`Ask` the model, `Run` code) and gets
the answer back, so the loop holds the logic and the two drivers only perform effects. Events go
to the tree's bus; the loop has no special cases for graph, history or progress.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable, Generator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import dspy

from rlm.engine import prompts
from rlm.engine.answer_types import AnswerType
from rlm.engine.calls import CallSite, aask_step, ask_step, model_name
from rlm.engine.describe import context_length, describe_context, shows_whole
from rlm.engine.limits import BUDGET_REASONS, clip_answer, clip_execution, deadline_passed, prompt_cap
from rlm.engine.parsing import TextFinal, count_code_blocks, cut_after_code, extract_code, find_text_final
from rlm.engine.result import StepRecord
from rlm.engine.slots import Slot
from rlm.engine.tree import Tree
from rlm.errors import BudgetExceededError, MaxIterationsError
from rlm.events import NodeFinished, NodeStarted, StepExecuted
from rlm.sandbox.base import ExecutionResult, Sandbox

# Answers up to this size on one line are values (a number, an id, a name): the kind small models
# invent. Longer answers are prose written from what the model read.
SHORT_ANSWER_CHARS = 100


# The setting behind each budget's finish reason.
_LIMIT_OF_REASON = {reason: limit for limit, reason in BUDGET_REASONS.items()}


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
    value: Any = None  # the typed answer, when the run asked for one and the answer fits


Plan = Generator[Ask | Run, Any, NodeOutcome]


class NodeRun:
    """One node of the tree: its own sandbox holding its `context`, and its loop."""

    def __init__(
        self,
        tree: Tree,
        query: str,
        context: Any,
        depth: int,
        parent_id: str | None,
        lm: dspy.BaseLM,
        slot: Slot | None = None,
        ceiling: float | None = None,
    ) -> None:
        """A child comes with its sandbox `slot` and a `ceiling`: its parent step's deadline."""
        from rlm.engine.subcalls import HostFunctions  # subcalls creates NodeRuns: import late

        self.tree = tree
        self.query = query
        self.context = context
        self.depth = depth
        self.parent_id = parent_id
        self.lm = lm
        self.slot = slot
        self.ceiling = ceiling
        self.answer_type: AnswerType | None = None  # set on the root by `run(..., output=T)`
        # Set on a session's root (`rlm.session`): its long-lived sandbox, and what the model is
        # told about the session's earlier questions and the variables it made.
        self.session_sandbox: Sandbox | None = None
        self.session_note = ""
        self.steps_done = 0  # steps recorded so far: a node that fails still reports them
        self.node_id = tree.new_node_id()
        self.site = CallSite(self.node_id, depth, tree.bus, tree.budget, tree.requests, tree.run_key)
        self.host = HostFunctions(self)
        self.started = 0.0

    # --- the loop ------------------------------------------------------------------------------------
    def plan(self) -> Plan:
        config = self.tree.config
        limit = config.max_iterations
        prompt_chars, _ = prompt_cap(config.sub_prompt_chars, self.tree.sub_lm)
        shape = f"{self.answer_type.instructions()}\n" if self.answer_type else ""
        memory = f"{self.session_note}\n" if self.session_note else ""
        context_info = (
            f"{describe_context(self.context)}\n"
            f"{prompts.sub_model_line(prompt_chars, config.sub_model_note)}\n"
            f"{shape}{memory}\n"
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
            if (out := self._out_of()) is not None:
                reason = out
                break
            try:
                reply = yield ask()
            except BudgetExceededError as exc:  # a sibling spent the budget since the check above
                reason = BUDGET_REASONS[exc.limit]
                break
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
                    refused = prompts.GUESS_NOTE if unfounded(iteration, reply, result.final_answer) else None
                    refused = refused or self._misfit(result.final_answer)
                    if refused is None:
                        self._record(trajectory, iteration, reply, code, result.output, None)
                        return self._outcome(result.final_answer, "final", iteration, trajectory)
                    notes.append(refused)
                    text_final = None
                if repeats > 1:
                    notes.append(prompts.REPEATED_NOTE)
            if text_final is not None and error is None:
                answer, final_error = yield from self._resolve_text_final(text_final)
                refused = None
                if answer is not None:
                    refused = prompts.GUESS_NOTE if unfounded(iteration, reply, answer) else self._misfit(answer)
                    if refused is None:
                        self._record(trajectory, iteration, reply, code or "", output, None)
                        return self._outcome(answer, "final", iteration, trajectory)
                    notes.append(refused)
                error = final_error
            elif code is None and text_final is None:
                notes.append(prompts.NO_CODE_NOTE)
            self._record(trajectory, iteration, reply, code or "", output, error)
            if repeats > config.max_repeated_steps:
                reason = "repeated"
            elif (out := self._out_of()) is not None:
                reason = out
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
        if deadline_passed(self.ceiling):
            return self._unfinished("time", trajectory)
        try:
            reply = yield ask("answer_now")
        except BudgetExceededError as exc:
            return self._unfinished(BUDGET_REASONS[exc.limit], trajectory)
        answer = yield from self._last_answer(reply)
        if config.strict and self.depth == 0 and reason in _LIMIT_OF_REASON:
            raise BudgetExceededError(
                f"Budget exceeded: {_LIMIT_OF_REASON[reason]} ran out; the answer of the last step is attached as "
                ".partial_answer. Raise the budget, or drop strict=True to get it as the result.",
                limit=_LIMIT_OF_REASON[reason],
                partial_answer=answer,
            )
        return self._outcome(answer, reason, len(trajectory), trajectory)

    def _misfit(self, answer: str) -> str | None:
        """Why a FINAL answer does not fit the expected type (told to the model), or None."""
        return None if self.answer_type is None else self.answer_type.refusal(answer)

    def _outcome(self, answer: str, reason: str, iterations: int, trajectory: list[StepRecord]) -> NodeOutcome:
        value = None
        if self.answer_type is not None and self.answer_type.refusal(answer) is None:
            value = self.answer_type.parse(answer)
        return NodeOutcome(answer, reason, iterations, tuple(trajectory), value)

    def _out_of(self) -> str | None:
        """Why the node must stop now: the tree's LM calls or its parent step's time are spent."""
        if self.tree.budget.exhausted:
            reason = self.tree.budget.reason
            limit = _LIMIT_OF_REASON[reason]
            self.host.log.hit(limit, f"{limit} is used up: the node stops", told=True)
            return reason
        if deadline_passed(self.ceiling):
            return "time"
        return None

    def _unfinished(self, reason: str, trajectory: list[StepRecord]) -> NodeOutcome:
        """A child that may not ask for a last answer ends with what it has: its last output."""
        why = prompts.UNFINISHED[reason]
        self.host.log.hit(_LIMIT_OF_REASON.get(reason, "max_step_seconds"), f"node ended: {why}")
        last = next((step.output for step in reversed(trajectory) if step.output.strip()), "")
        answer = f"[no answer: {why}; its last output follows]\n{last}" if last else f"[no answer: {why}]"
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
        self.steps_done += 1
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
                iterations=outcome.iterations if outcome else self.steps_done,
                duration_s=time.perf_counter() - self.started,
                error=None if error is None else f"{type(error).__name__}: {error}",
            )
        )

    def _step_deadline(self) -> float:
        """Now + max_step_seconds, but never past the parent step's end or the run's time budget."""
        ends = [time.monotonic() + self.tree.config.max_step_seconds, self.ceiling, self.tree.budget.deadline]
        return min(end for end in ends if end is not None)

    def _checked(self, result: ExecutionResult) -> ExecutionResult:
        self.host.raise_fatal()
        return clip_execution(result, self.tree.config, self.host.log)

    def _finished(self, outcome: NodeOutcome) -> NodeOutcome:
        return replace(outcome, answer=clip_answer(outcome.answer, self.tree.config, self.host.log))

    def run(self) -> NodeOutcome:
        self._begin()
        slot = self.slot = self.slot or self.tree.slots.root()
        stop = self.tree.config.step_stop
        outcome = None
        sandbox: Sandbox | None = None
        opening: Future[None] | None = None
        try:
            sandbox = self.session_sandbox or self.tree.make_sandbox()
            opening = _in_background(_opener(sandbox, self.context))
            plan = self.plan()
            value: Any = None
            throw = False
            while True:
                effect = plan.throw(value) if throw else plan.send(value)
                throw = False
                if isinstance(effect, Ask):
                    try:
                        value = ask_step(self.site, self.tree.predictor, self.lm, effect.inputs, effect.purpose, stop)
                    except BudgetExceededError as exc:  # the plan ends the node with what it has
                        value, throw = exc, True
                else:
                    opening.result()  # a sandbox that failed to start fails the node here
                    self.host.begin_step(self._step_deadline())
                    value = self._checked(sandbox.execute(effect.code, self.host.call))
        except StopIteration as done:
            assert opening is not None
            try:
                opening.result()  # answered without running code: a broken sandbox still fails the node
            except BaseException as exc:  # raised in this handler, the sibling below would not see it
                self._end(None, exc)
                raise
            outcome = self._finished(done.value)
            return outcome
        except BaseException as exc:
            self._end(None, exc)
            raise
        finally:
            try:
                if opening is not None:
                    opening.exception()  # wait: close must not race a start still under way
                if sandbox is not None:
                    sandbox.close()
            finally:
                slot.release()
            if outcome is not None:
                self._end(outcome, None)

    async def arun(self) -> NodeOutcome:
        self._begin()
        slot = self.slot = self.slot or self.tree.slots.root()
        stop = self.tree.config.step_stop
        loop = asyncio.get_running_loop()
        # The node's own thread for sandbox work: nodes waiting on their children must not use up
        # a shared pool that the children need to start their sandboxes.
        worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"rlm-{self.node_id}")

        def bridge(fn: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
            # Runs on the sandbox thread; the sub-call itself is awaited on the event loop.
            return asyncio.run_coroutine_threadsafe(self.host.acall(fn, args, kwargs), loop).result()

        outcome = None
        sandbox: Sandbox | None = None
        opening: asyncio.Future[None] | None = None
        try:
            sandbox = self.session_sandbox or self.tree.make_sandbox()
            # The node's worker runs in order: steps queue behind the start, close comes last.
            opening = loop.run_in_executor(worker, _opener(sandbox, self.context))
            plan = self.plan()
            value: Any = None
            throw = False
            while True:
                effect = plan.throw(value) if throw else plan.send(value)
                throw = False
                if isinstance(effect, Ask):
                    try:
                        value = await aask_step(
                            self.site, self.tree.predictor, self.lm, effect.inputs, effect.purpose, stop
                        )
                    except BudgetExceededError as exc:  # the plan ends the node with what it has
                        value, throw = exc, True
                else:
                    await opening  # a sandbox that failed to start fails the node here
                    self.host.begin_step(self._step_deadline())
                    result = await loop.run_in_executor(worker, sandbox.execute, effect.code, bridge)
                    value = self._checked(result)
        except StopIteration as done:
            assert opening is not None
            try:
                await opening  # answered without running code: a broken sandbox still fails the node
            except BaseException as exc:  # raised in this handler, the sibling below would not see it
                self._end(None, exc)
                raise
            outcome = self._finished(done.value)
            return outcome
        except BaseException as exc:
            self._end(None, exc)
            raise
        finally:
            try:
                if opening is not None:
                    await asyncio.wait({opening})  # close must not race a start still under way
                    if not opening.cancelled():
                        opening.exception()  # raised above if it mattered; another error is on its way
                if sandbox is not None:
                    await loop.run_in_executor(worker, sandbox.close)
            finally:
                worker.shutdown(wait=False)
                slot.release()
            if outcome is not None:
                self._end(outcome, None)


def _opener(sandbox: Sandbox, context: Any) -> Callable[[], None]:
    """Start the sandbox and load the context: run while the node's first request is out.

    A worker process takes ~60 ms to start here (a remote sandbox, seconds), and the first step
    needs only the model; so both wait on each other only when the first reply comes sooner.
    """

    def open_sandbox() -> None:
        sandbox.start()
        sandbox.load(context)

    return open_sandbox


def _in_background(work: Callable[[], None]) -> Future[None]:
    future: Future[None] = Future()

    def run() -> None:
        try:
            work()
        except BaseException as exc:  # handed to the node, raised where it needs the sandbox
            future.set_exception(exc)
        else:
            future.set_result(None)

    threading.Thread(target=run, name="rlm-sandbox-start", daemon=True).start()
    return future
