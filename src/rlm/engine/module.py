"""`RLMModule`: the RLM as a DSPy module, so DSPy programs and optimizers can use it.

`forward(query, context)` runs a whole tree and returns a `dspy.Prediction` with `answer` and
`result` (an `RLMResult`). The one predictor, `step`, is shared by every node of the tree.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import dspy

from rlm.config import RLMConfig
from rlm.engine.answer_types import AnswerType
from rlm.engine.concurrency import RequestSlots
from rlm.engine.conversation import Conversation
from rlm.engine.describe import context_is_ascii, context_length
from rlm.engine.limits import CallBudget
from rlm.engine.node import NodeOutcome, NodeRun
from rlm.engine.result import RLMResult
from rlm.engine.slots import SandboxSlots
from rlm.engine.step import RLMStep
from rlm.engine.tree import Tree
from rlm.errors import ConfigurationError, ContextError
from rlm.events import EventBus, Subscriber
from rlm.sandbox.base import Sandbox, SandboxLimits
from rlm.sandbox.host_memory import HostFrameBudget, run_budget_bytes
from rlm.sandbox.registry import create_sandbox, resolve_sandbox_name
from rlm.tracking.usage import UsageTotals
from rlm.utf8 import utf8_text


class RLMModule(dspy.Module):
    def __init__(
        self,
        config: RLMConfig | None = None,
        lm: dspy.BaseLM | None = None,
        sub_lm: dspy.BaseLM | None = None,
        subscribers: Sequence[Subscriber] = (),
        sandbox_factory: Callable[[SandboxLimits], Sandbox] | None = None,
    ) -> None:
        """`lm` and `sub_lm` default to `dspy.settings.lm` at call time, as other DSPy modules do."""
        super().__init__()
        self.config = config or RLMConfig()
        self.lm = lm
        self.sub_lm = sub_lm
        self.subscribers = list(subscribers)
        self.sandbox_factory = sandbox_factory
        self.step = dspy.Predict(RLMStep)
        if sandbox_factory is None:
            resolve_sandbox_name(self.config.sandbox)  # an unknown name fails here, not mid-run

    def forward(
        self,
        query: str,
        context: Any,
        output: Any = None,
        session: tuple[Sandbox, str] | None = None,
        conversation: Conversation | None = None,
    ) -> dspy.Prediction:
        """`output`: the type the answer must have (`RLMResult.value`); see `answer_types`.
        `session`: a session's sandbox and its note for the model (`rlm.session`); `conversation`:
        its root conversation, carried over between its questions (`engine/conversation.py`)."""
        totals, node = self._prepare(query, context, output, session, conversation)
        started = time.perf_counter()
        outcome = node.run()
        return self._prediction(outcome, totals, time.perf_counter() - started)

    async def aforward(
        self,
        query: str,
        context: Any,
        output: Any = None,
        session: tuple[Sandbox, str] | None = None,
        conversation: Conversation | None = None,
    ) -> dspy.Prediction:
        totals, node = self._prepare(query, context, output, session, conversation)
        started = time.perf_counter()
        outcome = await node.arun()
        return self._prediction(outcome, totals, time.perf_counter() - started)

    def _prepare(
        self,
        query: str,
        context: Any,
        output: Any = None,
        session: tuple[Sandbox, str] | None = None,
        conversation: Conversation | None = None,
    ) -> tuple[UsageTotals, NodeRun]:
        validate_inputs(query, context)
        # The user's own text can hold a lone surrogate (stdin read with surrogateescape, a JSON
        # "\ud800"): it would end the first LM request, and a session's first question is kept as
        # its opening, so every later question failed too (attack round 14).
        query = utf8_text(query)
        if isinstance(context, str) and session is None:  # a session's text was made so once, at its opening
            context = utf8_text(context)
        answer_type = AnswerType(output) if output is not None else None
        root_lm = self.lm or dspy.settings.lm
        if root_lm is None:
            raise ConfigurationError("RLMModule has no LM: pass lm=... or call dspy.configure(lm=...)")
        sub_lm = self.sub_lm or root_lm
        totals = UsageTotals()
        config = self.config
        budget = CallBudget(
            config.max_llm_calls,
            max_tokens_total=config.max_tokens_total,
            max_cost_usd=config.max_cost_usd,
            max_time_s=config.max_time_s,
        )
        bus = EventBus([totals, budget.record, *self.subscribers])
        # One account for the whole tree: what its workers' messages may hold on the host at once.
        # A session's questions share the account its own worker counts against.
        kept: HostFrameBudget | None = getattr(session[0], "frame_budget", None) if session else None
        frame_budget = kept or HostFrameBudget(
            run_budget_bytes(context_length(context), config.max_depth, context_is_ascii(context))
        )
        limits = SandboxLimits(config.exec_timeout, config.memory_limit_mb, config.max_output_chars, frame_budget)
        factory = self.sandbox_factory
        tree = Tree(
            config=config,
            predictor=self.step,
            root_lm=root_lm,
            sub_lm=sub_lm,
            bus=bus,
            budget=budget,
            make_sandbox=(lambda: factory(limits)) if factory else (lambda: create_sandbox(config.sandbox, limits)),
            slots=SandboxSlots(config.max_live_sandboxes),
            requests=RequestSlots(config.max_concurrency),
        )
        root = NodeRun(tree, query, context, 0, None, root_lm)
        root.answer_type = answer_type
        if session is not None:
            root.session_sandbox, root.session_note = session
        root.conversation = conversation
        return totals, root

    @staticmethod
    def _prediction(outcome: NodeOutcome, totals: UsageTotals, wall_time: float) -> dspy.Prediction:
        result = RLMResult(
            answer=outcome.answer,
            finish_reason=outcome.finish_reason,
            iterations=outcome.iterations,
            depth=totals.max_depth,
            llm_calls=totals.llm_calls,
            usage=dict(totals.by_model),
            wall_time_s=wall_time,
            trajectory=outcome.trajectory,
            value=outcome.value,
        )
        return dspy.Prediction(answer=outcome.answer, result=result)


def validate_inputs(query: Any, context: Any) -> None:
    if not isinstance(query, str) or not query.strip():
        raise ContextError("The query must be a non-empty string: completion(query, context)")
    if isinstance(context, str):
        if not context.strip():
            raise ContextError("The context is empty: pass the text (or documents) to ask about")
        return
    if isinstance(context, (list, tuple, dict)):
        if not context:
            raise ContextError("The context has no documents: pass a non-empty list or dict")
        documents = context.values() if isinstance(context, dict) else context
        if isinstance(context, dict) and not all(isinstance(k, str) for k in context):
            raise ContextError("Multi-document contexts need string keys (document names)")
        for key, document in context.items() if isinstance(context, dict) else enumerate(documents):
            _check_json_like(document, f"context[{key!r}]")
        return
    hint = " (decode bytes with .decode('utf-8'))" if isinstance(context, (bytes, bytearray)) else ""
    raise ContextError(f"The context must be a str, or a list/dict of documents, got {type(context).__name__}{hint}")


def _check_json_like(value: Any, path: str) -> None:
    """ContextError naming the first value, at any depth, that is not text or JSON-like data."""
    pending = [(value, path)]
    while pending:
        item, where = pending.pop()
        if item is None or isinstance(item, (str, int, float, bool)):
            continue
        if isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str):
                    raise ContextError(f"{where} has a key {key!r} that is not a string: JSON-like data needs str keys")
                pending.append((child, f"{where}[{key!r}]"))
        elif isinstance(item, (list, tuple)):
            pending.extend((child, f"{where}[{i}]") for i, child in enumerate(item))
        else:
            raise ContextError(
                f"{where} is a {type(item).__name__}: documents must be text or JSON-like data (str, numbers, "
                "lists, dicts); convert it to str first"
            )
