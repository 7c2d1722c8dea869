"""The REPL loop of one RLM node, written once and driven either synchronously or with asyncio.

`NodeRun.plan()` is a generator: it yields what it needs (`Ask` the model, `Run` code) and gets
the answer back, so the loop holds the logic and the two drivers only perform effects. Events go
to the tree's bus; the loop has no special cases for graph, history or progress.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import dspy

from rlm.engine import prompts
from rlm.engine.answer_types import AnswerType
from rlm.engine.calls import CallSite
from rlm.engine.conversation import Conversation
from rlm.engine.describe import describe_context, quoted_parts, shows_whole
from rlm.engine.grounding import Grounding, shows
from rlm.engine.hints import error_hint
from rlm.engine.limits import BUDGET_REASONS, clip, clip_answer, deadline_passed, prompt_cap
from rlm.engine.parsing import (
    TextFinal,
    count_code_blocks,
    cut_after_code,
    extract_code,
    find_text_final,
    holds_statements,
)
from rlm.engine.result import StepRecord
from rlm.engine.slots import Slot
from rlm.engine.tree import Tree
from rlm.errors import BudgetExceededError, MaxIterationsError, NoAnswerError
from rlm.events import StepExecuted
from rlm.sandbox.base import ExecutionResult, Sandbox

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
        self.conversation: Conversation | None = None  # a session's root conversation, carried over
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
        # An answer the model typed must have been shown by an output first (engine/grounding.py).
        grounding = Grounding(self.query, enabled=not shows_whole(self.context))
        # The turns before this question (a session's) and the compaction of long conversations.
        conversation = self.conversation or Conversation.for_node(config, self.lm)
        for text in conversation.evidence():
            grounding.saw(0, "", text)

        def ask(purpose: str = "step") -> Generator[Ask, Any, Ask]:
            inputs = {"query": self.query, "context_info": context_info, "history": list(history)}
            return Ask((yield from conversation.prepare(inputs, self.host.log)), purpose)

        for iteration in range(1, limit + 1):
            if (out := self._out_of()) is not None:
                reason = out
                break
            try:
                reply = yield (yield from ask())
            except BudgetExceededError as exc:  # a sibling spent the budget since the check above
                reason = BUDGET_REASONS[exc.limit]
                break
            code = extract_code(reply)
            text_final = find_text_final(reply)
            output, error = "", None
            notes: list[str] = []
            repeats = 0
            comments_only = code is not None and not holds_statements(code)
            if code is not None:
                key = " ".join(code.split())
                runs[key] += 1
                repeats = runs[key]
                if comments_only:  # nothing to run; sent again, it is still a loop
                    notes.append(prompts.COMMENTS_ONLY_NOTE)
                    code = None
            if code is not None:
                result = yield Run(code)
                output, error = result.output, result.error
                grounding.saw(iteration, code, output)
                if count_code_blocks(reply) > 1:
                    notes.append(prompts.EXTRA_BLOCKS_NOTE)
                if result.final_answer is not None:
                    refused = self._refusal(grounding, result.final_answer, grounding.final_is_literal(code), iteration)
                    if refused is None:
                        self._record(trajectory, iteration, reply, code, result.output, None)
                        return self._outcome(result.final_answer, "final", iteration, trajectory)
                    notes.append(refused)
                    text_final = None
                if repeats > 1:
                    notes.append(prompts.repeated_note(failed=error is not None, printed=bool(output.strip())))
                if (hint := error_hint(error, trajectory)) is not None:
                    notes.append(hint)
            if text_final is not None and error is None:
                answer, final_error, literal = yield from self._resolve_text_final(text_final, grounding)
                if answer is not None:
                    refused = self._refusal(grounding, answer, literal, iteration)
                    if refused is None:
                        self._record(trajectory, iteration, reply, code or "", output, None)
                        return self._outcome(answer, "final", iteration, trajectory)
                    notes.append(refused)
                error = final_error
            elif code is None and text_final is None and not comments_only:
                notes.append(prompts.NO_CODE_NOTE)
            self._record(trajectory, iteration, reply, code or "", output, error)
            if repeats > config.max_repeated_steps:
                reason = "repeated"
            elif (out := self._out_of()) is not None:
                reason = out
            stopping = reason != "max_iterations" or iteration == limit
            judge_output = bool(output.strip()) and error is None
            closing = (
                prompts.answer_now(limit, reason)
                if stopping
                else prompts.step_line(iteration + 1, limit, judge_output=judge_output)
            )
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
            reply = yield (yield from ask("answer_now"))
        except BudgetExceededError as exc:
            return self._unfinished(BUDGET_REASONS[exc.limit], trajectory)
        step = len(trajectory) + 1
        answer, literal = yield from self._last_answer(reply, grounding, step)
        missing = None
        if (
            answer is None
            or not answer.strip()
            or grounding.engine_text(answer, prompts.ENGINE_MARKERS, (prompts.NO_ANSWER_MARKER,))
        ):
            missing = "no_answer"
        elif grounding.unfounded(answer, literal, step):
            missing = "unfounded"
        if config.strict and self.depth == 0 and reason in _LIMIT_OF_REASON:
            raise BudgetExceededError(
                f"Budget exceeded: {_LIMIT_OF_REASON[reason]} ran out; the answer of the last step is attached as "
                ".partial_answer. Raise the budget, or drop strict=True to get it as the result.",
                limit=_LIMIT_OF_REASON[reason],
                partial_answer=None if missing else answer,
            )
        if missing is not None or answer is None:
            # A budget that ran out is what the user must act on, so it stays the reason; a loop
            # that ended by itself ends as what its last reply lacked.
            reason = reason if reason in _LIMIT_OF_REASON else (missing or "no_answer")
            return self._without_answer(reason, reply, trajectory)
        return self._outcome(answer, reason, len(trajectory), trajectory)

    def _refusal(self, grounding: Grounding, answer: str, literal: bool, iteration: int) -> str | None:
        """Why a FINAL answer is not accepted (told to the model), or None."""
        if not answer.strip():
            return prompts.EMPTY_ANSWER_NOTE
        if grounding.engine_text(answer, prompts.ENGINE_MARKERS, (prompts.NO_ANSWER_MARKER,)):
            return prompts.ENGINE_TEXT_NOTE
        if grounding.unfounded(answer, literal, iteration):
            quoted = next((where for where, text in quoted_parts(self.context) if shows(text, answer)), None)
            return prompts.GUESS_NOTE if quoted is None else prompts.preview_guess_note(quoted)
        if self.answer_type is None:
            return None
        # The type is checked on the answer as the run would keep it (clipped to max_answer_chars):
        # parsed as a literal unclipped, a prose FINAL took the host quadratic time (attack round 17).
        # Grounding above reads it whole: a clipped text holds a cut marker no output ever showed.
        return self.answer_type.refusal(clip(answer, self.tree.config.max_answer_chars)[0])

    def _without_answer(self, reason: str, reply: str, trajectory: list[StepRecord]) -> NodeOutcome:
        """The last step gave no answer founded on an output: none is made up from its text.

        A root returns an empty answer (or raises when strict); a child returns a note its parent's
        code can read, so the parent knows the sub-task failed rather than taking the text as found.
        The last reply is kept as the trajectory's last entry (after `iterations`), so it is not lost.
        """
        why = prompts.UNFINISHED[reason]
        if reason not in ("no_answer", "unfounded"):
            why = f"{why}, and the last reply gave no answer founded on an output"
        if self.depth == 0 and self.tree.config.strict:
            raise NoAnswerError(
                f"No answer: {why}. The last reply is attached as .last_reply. Raise max_iterations, "
                "give the model a clearer query, or drop strict=True to get an empty answer with "
                f"finish_reason {reason!r}.",
                reason=reason,
                last_reply=reply,
            )
        answer = "" if self.depth == 0 else f"{prompts.NO_ANSWER_MARKER} {why}]"
        last = StepRecord(len(trajectory) + 1, reply, "", "", None)
        return NodeOutcome(answer, reason, len(trajectory), (*trajectory, last))

    def _outcome(self, answer: str, reason: str, iterations: int, trajectory: list[StepRecord]) -> NodeOutcome:
        answer = clip_answer(answer, self.tree.config, self.host.log)  # what the run keeps, and types
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
        marker = f"{prompts.NO_ANSWER_MARKER} {why}"
        answer = f"{marker}; its last output follows]\n{last}" if last else f"{marker}]"
        return NodeOutcome(answer, reason, len(trajectory), tuple(trajectory))

    def _resolve_text_final(
        self, final: TextFinal, grounding: Grounding
    ) -> Generator[Run, Any, tuple[str | None, str | None, bool]]:
        """A FINAL written as text: a variable it names wins over its literal text.

        Returns (answer, error, literal): `literal` when the answer is text the model typed, or a
        variable that holds only a constant it typed.
        """
        name = final.variable_name
        if name is not None:
            result: ExecutionResult = yield Run(f"FINAL_VAR({name!r})")
            if result.final_answer is not None:
                return result.final_answer, None, grounding.holds_typed(name)
            if final.kind == "FINAL_VAR":
                return None, result.error, False
        if final.kind == "FINAL_VAR":
            return None, f"FINAL_VAR needs a variable name, got {final.argument!r}", False
        return final.literal, None, True

    def _last_answer(self, reply: str, grounding: Grounding, step: int) -> Generator[Run, Any, tuple[str | None, bool]]:
        """The answer of the last step and whether the model typed it; None when it gave none.

        A reply without FINAL is not an answer: its text is the model's reasoning or our own
        placeholders echoed back, never something the code found.
        """
        text_final = find_text_final(reply)
        if text_final is not None:
            answer, _, literal = yield from self._resolve_text_final(text_final, grounding)
            if answer is not None:
                return answer, literal
        code = extract_code(reply)
        if code is not None:
            result: ExecutionResult = yield Run(code)
            grounding.saw(step, code, result.output)
            if result.final_answer is not None:
                return result.final_answer, grounding.final_is_literal(code)
        return None, False

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

    # --- drivers (engine/drive.py performs the plan's effects) ----------------------------------------
    def run(self) -> NodeOutcome:
        from rlm.engine.drive import drive  # drive works on NodeRuns: import late

        return drive(self)

    async def arun(self) -> NodeOutcome:
        from rlm.engine.drive import adrive

        return await adrive(self)
