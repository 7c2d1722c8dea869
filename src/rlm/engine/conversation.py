"""The root conversation as the model reads it: carried over between a session's questions, and
compacted into a summary the model writes itself when it nears `compact_at_tokens`.

`NodeRun.plan` passes the inputs of each step through `Conversation.prepare`, a generator that may
first yield one `Ask(purpose="compact")` for the summary. The system prompt and the first user
message never change, so providers' prefix caches keep paying; after a compaction the summary is
an assistant turn right after them, followed by the latest turn verbatim. `rlm.session` keeps one
`Conversation` for all its questions; any other node gets a fresh one from `for_node`.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rlm.engine import prompts
from rlm.engine.limits import CHARS_PER_TOKEN, _window_tokens
from rlm.errors import RLMError

if TYPE_CHECKING:
    from rlm.config import RLMConfig
    from rlm.engine.limits import LimitLog
    from rlm.engine.node import Ask

# Compact when the estimated prompt reaches this share of the model's input window. The estimate
# (CHARS_PER_TOKEN characters a token) runs high for prose (4.2 for the instructions with
# gpt-4o-mini's tokenizer) but low for logs and digits (2.5 for bench/root_prompt_tokens.py's log
# lines), and the reply and the summary call need room too. The paper authors' `rlms` compacts at
# 85% of the window it counts with a real tokenizer.
COMPACT_AT_SHARE = 0.6
# The window assumed when neither DSPy's nor LiteLLM's model metadata knows the model (servers
# behind api_base, custom LMs): small enough for common local servers set to 32k.
FALLBACK_WINDOW_TOKENS = 32_768
# Code outputs of earlier questions kept as evidence for `Grounding` after they left the prompt.
MAX_EVIDENCE_TEXTS = 200

SUMMARY_REQUEST = (
    "Before you go on: this conversation is about to be replaced by your summary of it, so write that "
    "summary now, as plain text without code. Keep exactly: each query and the answer you gave; every "
    "concrete value you found (numbers, names, ids, quoted lines) and where in `context` it was; the "
    "REPL variables you made and what they hold; for the current query, what is done and what is left."
)

Turn = dict[str, str]  # {"reply": what the model wrote, "observation": what it read next}


def compact_threshold(configured: int | None, lm: object) -> int:
    """`compact_at_tokens` if set, else COMPACT_AT_SHARE of the model's window where DSPy's model
    metadata knows it (`limits.prompt_cap` reads the same table), else of FALLBACK_WINDOW_TOKENS."""
    if configured is not None:
        return configured
    window = _window_tokens(str(getattr(lm, "model", ""))) or FALLBACK_WINDOW_TOKENS
    return int(window * COMPACT_AT_SHARE)


def estimate_tokens(texts: list[str]) -> int:
    return sum(len(text) for text in texts) // CHARS_PER_TOKEN


def bridge_observation(query: str, context_info: str) -> str:
    """What the model reads after it answered one question of a session: the next one."""
    return (
        "Your answer was returned. A new query about the same `context` follows; the REPL still holds "
        f"the variables your code made.\n\n{prompts.first_message(query, context_info)}"
    )


def continue_observation(query: str, compactions: int, context_info: str = "") -> str:
    """What the model reads after its own summary, which replaced the turns before it.

    `context_info`: a later question's task message (answer shape, variables, sizes), which the
    summary may have folded away with the turn that carried it; the first question's stays in the
    opening message.
    """
    times = "once" if compactions == 1 else f"{compactions} times"
    current = prompts.first_message(query, context_info) if context_info else f"Query: {query}"
    return (
        f"Your conversation so far was replaced by the summary above (compacted {times}); the REPL still "
        f"holds your variables. The current task:\n\n{current}\n\nContinue from the summary; do not "
        "repeat work it records."
    )


@dataclass(frozen=True)
class Compaction:
    """One compaction, for `Session.compactions`, `rlm chat`'s /history and the LimitReached event."""

    question: int  # which question of the conversation (1 = the first) it happened in
    step: int  # the step of that question it came before
    turns_folded: int
    tokens_before: int  # estimated, as compared with the threshold
    tokens_after: int
    summary: str


class Conversation:
    """The turns a root node's steps are sent with, beyond the node's own question.

    State: the first message (`opening`, fixed for good), the committed turns of earlier questions
    (after a compaction: the summary turn, then what came later), and for the question under way
    how many of its turns a summary replaced.
    """

    def __init__(self, compact_at_tokens: int) -> None:
        self.compact_at_tokens = compact_at_tokens
        self.opening: tuple[str, str] | None = None  # (query, context_info) of the first message
        self.turns: list[Turn] = []
        self.compactions: list[Compaction] = []
        self.questions = 0  # questions begun
        self._evidence: list[str] = []  # code outputs of earlier questions, for grounding answers
        self._summary: Turn | None = None
        # the question under way
        self._bridge_reply: str | None = None  # the reply that ended the previous question
        self._bridge: Turn | None = None
        self._bridge_folded = False
        self._history: list[Turn] = []
        self._folded = 0
        self._retry_at_tokens = 0  # after a failed summary: not before the prompt reaches this

    @classmethod
    def for_node(cls, config: RLMConfig, lm: object) -> Conversation:
        return cls(compact_threshold(config.compact_at_tokens, lm))

    # --- the session's side -------------------------------------------------------------------------
    def begin_question(self) -> None:
        """A new question starts; an unfinished one before it (it raised) leaves only its summary."""
        if self.opening is not None:
            self._bridge_reply = self._bridge_reply or "(That query ended without an answer.)"
        self._reset_question()
        self.questions += 1

    def end_question(self, closing_reply: str, outputs: Sequence[str] = ()) -> None:
        """The question under way was answered with `closing_reply`: its turns are carried over, and
        what its code printed (`outputs`) stays evidence for later answers."""
        if self.opening is None:  # answered without asking the model (cannot happen today)
            return
        if self._bridge is not None and not self._bridge_folded:
            self.turns.append(self._bridge)
        self.turns.extend(self._history[self._folded :])
        self._evidence.extend(output for output in outputs if output.strip())
        del self._evidence[:-MAX_EVIDENCE_TEXTS]
        self._reset_question()
        self._bridge_reply = closing_reply

    def evidence(self) -> list[str]:
        """Code outputs of earlier questions: what the model has seen, even once compacted away."""
        return list(self._evidence)

    def _reset_question(self) -> None:
        self._bridge, self._bridge_folded, self._history, self._folded = None, False, [], 0

    # --- the node's side ----------------------------------------------------------------------------
    def prepare(self, inputs: dict[str, Any], log: LimitLog | None = None) -> Generator[Ask, Any, dict[str, Any]]:
        """The inputs to send for this step: the node's own `inputs` (query, context_info, history)
        placed after the conversation so far; compacted first when the prompt would reach the limit."""
        query, context_info, history = inputs["query"], inputs["context_info"], list(inputs["history"])
        if self.opening is None:
            self.opening = (query, context_info)
            self.questions = max(self.questions, 1)
        self._history = history
        if self._bridge_reply is not None:
            self._bridge = {"reply": self._bridge_reply, "observation": bridge_observation(query, context_info)}
        turns = self._turns()
        tokens = self._estimate(turns)
        if tokens < max(self.compact_at_tokens, self._retry_at_tokens) or not self._foldable(turns):
            return self._inputs(turns)
        from rlm.engine.node import Ask  # node imports this module: import late

        folded, latest = turns[:-1], turns[-1]
        request = [*folded[:-1], {**folded[-1], "observation": f"{folded[-1]['observation']}\n\n{SUMMARY_REQUEST}"}]
        try:
            summary = yield Ask(self._inputs(request), "compact")
        except RLMError as exc:  # no call left, or the provider failed: the step goes uncompacted
            summary, failure = "", f"{type(exc).__name__}: {exc}"
        else:
            summary, failure = str(summary or "").strip(), "the model wrote an empty summary"
        if not summary:
            # try again only once the conversation has grown by a quarter, not on every step
            self._retry_at_tokens = int(tokens * 1.25)
            if log is not None:
                log.hit("compact_at_tokens", f"compaction skipped ({failure}); the step goes uncompacted")
            return self._inputs(turns)
        later_task = context_info if self._bridge is not None else ""
        self._summary = {
            "reply": summary,
            "observation": continue_observation(query, len(self.compactions) + 1, later_task),
        }
        if len(history) > self._folded:  # the latest turn is this question's: all before it is folded
            self._folded = len(history) - 1
            self._bridge_folded = self._bridge is not None
            self.turns = [self._summary]
        elif self._bridge is not None:  # the latest turn is the bridge to this question
            self.turns = [self._summary]
        else:
            self.turns = [self._summary, latest]
        turns = self._turns()
        after = self._estimate(turns)
        self.compactions.append(Compaction(self.questions, len(history) + 1, len(folded), tokens, after, summary))
        if log is not None:
            log.hit(
                "compact_at_tokens",
                f"the root conversation reached about {tokens:,} tokens "
                f"(compact_at_tokens={self.compact_at_tokens:,}): {len(folded)} turns were replaced by "
                f"the model's summary; about {after:,} tokens now",
                told=True,
            )
        return self._inputs(turns)

    def _turns(self) -> list[Turn]:
        bridge = [self._bridge] if self._bridge is not None and not self._bridge_folded else []
        return [*self.turns, *bridge, *self._history[self._folded :]]

    def _inputs(self, turns: list[Turn]) -> dict[str, Any]:
        assert self.opening is not None
        query, context_info = self.opening
        return {"query": query, "context_info": context_info, "history": turns}

    def _estimate(self, turns: list[Turn]) -> int:
        assert self.opening is not None
        texts = [prompts.INSTRUCTIONS, prompts.first_message(*self.opening)]
        texts.extend(text for turn in turns for text in (turn["reply"], turn["observation"]))
        return estimate_tokens(texts)

    def _foldable(self, turns: list[Turn]) -> bool:
        """At least one turn besides the latest, and not only the summary made last time."""
        return len(turns) >= 2 and any(turn is not self._summary for turn in turns[:-1])
