"""`rlm.session(context)`: load a context once, ask it many questions; the REPL's variables persist.

Each question is a run of its own (events, graph, history, budgets, `RLMResult`), rooted in the
session's one sandbox, so `context` crosses into the sandbox once and what the model's code made
for one question is there for the next. The root conversation carries over from question to
question (`engine/conversation.py`), compacted into a summary the model writes when it nears
`compact_at_tokens`; the model is also told the variables its code made (names, types, sizes).
Closing the session closes its sandbox. Built by `RLM.session`; runs through `RLMModule`.
"""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING, Any

from rlm.engine.conversation import Compaction, Conversation, compact_threshold
from rlm.engine.describe import context_is_ascii, context_length
from rlm.engine.module import validate_inputs
from rlm.engine.parsing import bound_names, cut_after_code
from rlm.engine.result import RLMResult, StepRecord
from rlm.errors import ConfigurationError
from rlm.sandbox.base import ExecutionResult, Sandbox, SandboxLimits, SubcallHandler
from rlm.sandbox.host_memory import HostFrameBudget, run_budget_bytes
from rlm.sandbox.registry import create_sandbox
from rlm.utf8 import utf8_text

if TYPE_CHECKING:
    from rlm.facade import RLM

# The variables named in the note on earlier questions' REPL state: the latest this many.
MAX_NAMES_SHOWN = 30


class _KeptSandbox:
    """The session's sandbox as a question's root node sees it: started and loaded already, and
    the node's `close` at the end of a question is not the end of the sandbox."""

    def __init__(self, inner: Sandbox, frame_budget: HostFrameBudget) -> None:
        self.inner = inner
        # The session's account of worker messages held on the host: its own worker counts against
        # it, and each question's tree shares it (engine/module.py), as one run's nodes do.
        self.frame_budget = frame_budget

    def start(self) -> None:
        pass

    def load(self, context: Any) -> None:
        pass

    def execute(self, code: str, handler: SubcallHandler) -> ExecutionResult:
        return self.inner.execute(code, handler)

    def close(self) -> None:
        pass


def _no_calls(fn: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
    raise RuntimeError("the session's variable listing makes no sub-calls")


class Session:
    """Many questions over one loaded context; use as `with rlm.session(ctx) as s:` (or `async with`)."""

    def __init__(self, rlm: RLM, context: Any, compact_at_tokens: int | None = None) -> None:
        validate_inputs("session", context)
        if compact_at_tokens is not None and (
            isinstance(compact_at_tokens, bool) or not isinstance(compact_at_tokens, int) or compact_at_tokens < 1
        ):
            raise ConfigurationError(
                "compact_at_tokens must be a positive integer (or None for the model's window), "
                f"got {compact_at_tokens!r}"
            )
        self._rlm = rlm
        self.context = context
        configured = rlm.config.compact_at_tokens if compact_at_tokens is None else compact_at_tokens
        # Estimated prompt tokens at which the root conversation is compacted into the model's summary.
        self.compact_at_tokens = compact_threshold(configured, rlm.lm)
        self.conversation = Conversation(self.compact_at_tokens)
        self.turns: list[tuple[str, str]] = []  # (question, answer) of the questions asked so far
        # top-level names the model's code assigned, first seen first (a dict: ordered, and a lookup
        # per name instead of a scan of every name so far)
        self.names: dict[str, None] = {}
        self._lock = threading.Lock()  # one question at a time: they share one REPL
        self._sandbox: Sandbox | None = None
        self._open()

    # --- questions -----------------------------------------------------------------------------------
    def completion(self, query: str) -> str:
        return self.run(query).answer

    async def acompletion(self, query: str) -> str:
        return (await self.arun(query)).answer

    @property
    def compactions(self) -> list[Compaction]:
        """Each time the conversation was compacted: question, step, tokens before and after, summary."""
        return list(self.conversation.compactions)

    def run(self, query: str, output: Any = None) -> RLMResult:
        """Answer `query` about the session's context; like `RLM.run`, REPL state kept."""
        with self._lock:
            kept, note, conversation = self._prepare()
            result = self._rlm._run_in_session(query, self.context, output, kept, note, conversation)
            self._remember(query, result)
            return result

    async def arun(self, query: str, output: Any = None) -> RLMResult:
        # Polled, not acquired on a thread: a cancelled wait must not leave the lock taken.
        while not self._lock.acquire(blocking=False):
            await asyncio.sleep(0.01)
        try:
            kept, note, conversation = self._prepare()
            result = await self._rlm._arun_in_session(query, self.context, output, kept, note, conversation)
            self._remember(query, result)
            return result
        finally:
            self._lock.release()

    # --- lifecycle -----------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget the earlier questions and start a fresh REPL holding only `context`."""
        with self._lock:
            self._close_sandbox()
            self.turns.clear()
            self.names.clear()
            self.conversation = Conversation(self.compact_at_tokens)
            self._open()

    def close(self) -> None:
        with self._lock:
            self._close_sandbox()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.close)

    # --- internals -----------------------------------------------------------------------------------
    def _open(self) -> None:
        config = self._rlm.config
        if isinstance(self.context, str):
            self.context = utf8_text(self.context)  # as each question's run takes it (engine/module.py)
        self._frame_budget = HostFrameBudget(
            run_budget_bytes(context_length(self.context), config.max_depth, context_is_ascii(self.context))
        )
        limits = SandboxLimits(config.exec_timeout, config.memory_limit_mb, config.max_output_chars, self._frame_budget)
        sandbox = create_sandbox(config.sandbox, limits)
        try:
            sandbox.start()
            sandbox.load(self.context)
        except BaseException:
            sandbox.close()
            raise
        self._sandbox = sandbox

    def _close_sandbox(self) -> None:
        sandbox, self._sandbox = self._sandbox, None
        if sandbox is not None:
            sandbox.close()

    def _prepare(self) -> tuple[_KeptSandbox, str, Conversation]:
        if self._sandbox is None:
            raise RuntimeError("this session is closed: open a new one with rlm.session(context)")
        note = self._note(self._sandbox)
        self.conversation.begin_question()
        return _KeptSandbox(self._sandbox, self._frame_budget), note, self.conversation

    def _remember(self, query: str, result: RLMResult) -> None:
        self.conversation.end_question(closing_reply(result), [step.output for step in result.trajectory])
        self.turns.append((query, result.answer))
        for name in assigned_names(result.trajectory):
            self.names.setdefault(name)

    def _note(self, sandbox: Sandbox) -> str:
        """What the model is told about the session so far (empty for its first question)."""
        if not self.turns:
            return ""
        variables = describe_variables(sandbox, list(self.names)[-MAX_NAMES_SHOWN:])
        # the conversation itself (or its summary) holds the earlier questions and answers
        return "Your variables from earlier queries: " + "; ".join(variables) if variables else ""


def closing_reply(result: RLMResult) -> str:
    """The model's reply that ended a question, as the conversation carries it to the next."""
    if result.finish_reason == "final" and result.trajectory:
        return cut_after_code(result.trajectory[-1].reply)
    return f"FINAL({result.answer})" if result.answer else "(I gave no answer.)"


def assigned_names(trajectory: tuple[StepRecord, ...]) -> list[str]:
    """Top-level names the steps' code bound (assignments, loops, defs, imports), in order."""
    names: dict[str, None] = {}
    for step in trajectory:
        for name in bound_names(step.code):
            if not name.startswith("_"):
                names.setdefault(name)
    return list(names)


def describe_variables(sandbox: Sandbox, names: list[str]) -> list[str]:
    """`name: list of 3 items`-style lines, asked of the REPL itself (under its policy and limits)."""
    if not names:
        return []
    probes = []
    for name in names:
        # Small values are shown; a large one only by its type and size.
        probes.append(
            f"try:\n"
            f"    print({name!r} + '|' + repr(type({name})) + '|' + str(len({name})) + '|' + "
            f"(repr({name})[:60] if len({name}) <= 5 else ''))\n"
            f"except NameError:\n"
            f"    print({name!r} + '|gone||')\n"
            f"except Exception:\n"
            f"    print({name!r} + '|' + repr(type({name})) + '||' + repr({name})[:60])\n"
        )
    result = sandbox.execute("".join(probes), _no_calls)
    described = []
    for line in result.output.splitlines():
        parts = line.split("|", 3)
        if len(parts) != 4 or parts[0] not in names:
            continue
        name, kind, size, shown = parts
        kind = kind.removeprefix("<class '").removesuffix("'>")
        if kind == "gone":
            described.append(f"{name} (lost: the REPL was restarted)")
        elif kind in ("function", "type"):
            described.append(f"{name} ({'a function' if kind == 'function' else 'a class'})")
        elif size:
            described.append(f"{name} ({kind} of {size}{': ' + shown if shown else ''})")
        else:
            described.append(f"{name} ({kind}: {shown})")
    return described
