"""`RLM`: the public entry point. Reads settings and `.env`, builds the LMs and the engine module,
owns the graph and history trackers, and writes them out after every run, failed runs included.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import dspy
import networkx as nx

from rlm.config import RLMConfig
from rlm.dotenv_keys import load_dotenv_file
from rlm.engine.module import RLMModule
from rlm.engine.prompts import CODE_BLOCK_END, SLOW_SUB_MODEL_NOTE
from rlm.engine.result import RLMResult
from rlm.errors import ConfigurationError
from rlm.events import Event
from rlm.models.resolve import build_lm, is_local_model
from rlm.models.retry import DEFAULT_MAX_WAIT_S, RetryPolicy, use_policy
from rlm.settings_check import warn_misspelled_parameters
from rlm.tracking.graph import CallGraph
from rlm.tracking.history import CallHistory
from rlm.tracking.progress import ProgressPrinter

if TYPE_CHECKING:
    from rlm.engine.conversation import Conversation
    from rlm.sandbox.base import Sandbox
    from rlm.session import Session


def _local_compact_at() -> int:
    """The bundled model's window is the one its server was started with; no metadata table knows it."""
    from rlm.engine.conversation import COMPACT_AT_SHARE
    from rlm.models.local_server import DEFAULT_CONTEXT_TOKENS

    return int(DEFAULT_CONTEXT_TOKENS * COMPACT_AT_SHARE)


# Seconds an LM request may take. The bundled model's server answers one request at a time, slowly
# on a busy CPU (a full 768-token reply is ~30 s on 2 idle cores, minutes under load): a request
# that waits behind others is not dead, and a timed-out one is sent again, so its server does the
# work twice. It gets a longer default; a timeout the user passes is kept as given.
DEFAULT_TIMEOUT_S = 120.0
LOCAL_TIMEOUT_S = 900.0
# The bundled server's guard restarts a server that died, and a start takes 3-16 s here; from 1 s
# the backoff's three waits (about 1, 2 and 4 s) were over before it was back. From 4 s they are
# 3-4, 6-8 and 12-16 s (jitter): the same three attempts, the last one after the slowest start.
LOCAL_RETRY_BASE_S = 4.0


class RLM:
    """A Recursive Language Model: ask questions of contexts far larger than the model's window.

    >>> rlm = RLM(model="gpt-4o-mini")
    >>> answer = rlm.completion("What are the main themes?", long_document)
    """

    def __init__(
        self,
        model: str | dspy.BaseLM = "gpt-4o-mini",
        recursive_model: str | dspy.BaseLM | None = None,
        api_key: str | None = None,
        api_base: str | None = None,
        max_depth: int = 5,
        max_iterations: int = 20,
        temperature: float | None = None,
        timeout: float | None = DEFAULT_TIMEOUT_S,
        sandbox: str = "auto",
        enable_graph_tracking: bool = False,
        graph_output_path: str | Path | None = None,
        enable_history: bool = False,
        history_output_path: str | Path | None = None,
        *,
        max_llm_calls: int = 200,
        max_tokens_total: int | None = None,
        max_cost_usd: float | None = None,
        max_time_s: float | None = None,
        compact_at_tokens: int | None = None,
        max_retry_wait_s: float = DEFAULT_MAX_WAIT_S,
        strict: bool = False,
        exec_timeout: float = 30.0,
        max_step_seconds: float = 300.0,
        memory_limit_mb: int = 1024,
        max_output_chars: int | None = None,
        max_answer_chars: int = 100_000,
        max_concurrency: int | None = None,
        max_batch_items: int = 256,
        max_live_sandboxes: int = 16,
        sub_prompt_chars: int | None = None,
        max_tokens: int | None = None,
        on_event: Callable[[Event], Any] | None = None,
        verbose: bool = False,
        program: str | Path | None = None,
        **lm_kwargs: Any,
    ) -> None:
        """`program`: a file written by `rlm optimize` (the step's compiled demos/instructions)."""
        warn_misspelled_parameters(lm_kwargs, inspect.signature(RLM.__init__).parameters)
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0):
            raise ConfigurationError(f"timeout must be positive seconds per LM request (or None), got {timeout!r}")
        _refuse_settings_without_a_named_model(
            model,
            recursive_model,
            api_key=api_key,
            api_base=api_base,
            temperature=temperature,
            max_tokens=max_tokens,
            timeout=None if timeout is DEFAULT_TIMEOUT_S else timeout,
            max_retry_wait_s=None if max_retry_wait_s == DEFAULT_MAX_WAIT_S else max_retry_wait_s,
            **lm_kwargs,
        )
        load_dotenv_file()
        # The bundled local model reads ~100 tokens/s: smaller outputs and sub-prompts keep steps short.
        small = is_local_model(model)
        if small and timeout is DEFAULT_TIMEOUT_S:  # the default, not a value the user passed
            timeout = LOCAL_TIMEOUT_S
        self.config = RLMConfig(
            max_depth=max_depth,
            max_iterations=max_iterations,
            max_llm_calls=max_llm_calls,
            max_tokens_total=max_tokens_total,
            max_cost_usd=max_cost_usd,
            max_time_s=max_time_s,
            strict=strict,
            sandbox=sandbox,
            exec_timeout=exec_timeout,
            max_step_seconds=max_step_seconds,
            max_live_sandboxes=max_live_sandboxes,
            memory_limit_mb=memory_limit_mb,
            max_output_chars=max_output_chars or (2000 if small else 4000),
            max_answer_chars=max_answer_chars,
            # The bundled model's server answers one request at a time: more in flight only queue
            # there, where their read timeouts run (our own slots make them wait without one).
            max_concurrency=max_concurrency if max_concurrency is not None else (1 if small else 16),
            max_batch_items=max_batch_items,
            sub_prompt_chars=sub_prompt_chars or (12_000 if small else 100_000),
            sub_model_note=SLOW_SUB_MODEL_NOTE if small else "",
            step_stop=(CODE_BLOCK_END,) if small else (),
            compact_at_tokens=(_local_compact_at() if small else None)
            if compact_at_tokens is None
            else compact_at_tokens,
        )
        # Provider retries are ours (models/retry.py: Retry-After capped and jittered, within max_time_s),
        # so the LMs built here have DSPy's own retries off; an LM object passed in keeps its own.
        retries = RetryPolicy(
            retries=lm_kwargs.pop("num_retries", 3),
            max_wait_s=max_retry_wait_s,
            base_s=LOCAL_RETRY_BASE_S if small else RetryPolicy.base_s,
            secrets=(api_key,) if api_key else (),
        )
        lm_settings = dict(
            api_key=api_key,
            api_base=api_base,
            temperature=temperature,
            timeout=timeout,
            max_tokens=max_tokens,
            num_retries=0,
            **lm_kwargs,
        )
        self.lm = build_lm(model, **lm_settings)
        self.recursive_lm = build_lm(recursive_model, **lm_settings) if recursive_model is not None else self.lm
        for name, built in ((model, self.lm), (recursive_model, self.recursive_lm)):
            if isinstance(name, str):
                use_policy(built, retries)
        self.graph_output_path = Path(graph_output_path) if graph_output_path else None
        self.history_output_path = Path(history_output_path) if history_output_path else None
        self.enable_graph_tracking = enable_graph_tracking or self.graph_output_path is not None
        self.enable_history = enable_history or self.history_output_path is not None
        self.on_event = on_event
        self._progress = ProgressPrinter(max_iterations) if verbose else None
        self._graph = CallGraph()
        self._history = CallHistory()
        self._lock = threading.Lock()
        self.module = RLMModule(self.config, self.lm, self.recursive_lm, subscribers=[self._dispatch])
        if program is not None:
            from rlm.optimize.program_file import load_program, model_name

            load_program(program, self.module.step, model_name(self.lm))

    # --- answers -------------------------------------------------------------------------------------
    def completion(self, query: str, context: Any) -> str:
        """The answer to `query` about `context` (a str, or a list/dict of documents)."""
        return self.run(query, context).answer

    async def acompletion(self, query: str, context: Any) -> str:
        return (await self.arun(query, context)).answer

    def run(self, query: str, context: Any, output: Any = None) -> RLMResult:
        """Like `completion`, with usage, cost, iterations, depth, finish reason and trajectory.

        `output`: the type the answer must have (`int`, `list[str]`, a dataclass, a Pydantic model,
        or a field list such as "count: int, names: list[str]"); a FINAL value that does not fit is
        refused and the model told why; the validated value is `RLMResult.value`.
        """
        self._new_run()
        try:
            prediction = self.module(query=query, context=context, output=output)
        finally:
            self._write_outputs()
        return prediction.result

    async def arun(self, query: str, context: Any, output: Any = None) -> RLMResult:
        self._new_run()
        try:
            prediction = await self.module.acall(query=query, context=context, output=output)
        finally:
            await asyncio.to_thread(self._write_outputs)
        return prediction.result

    # --- sessions ------------------------------------------------------------------------------------
    def session(self, context: Any, compact_at_tokens: int | None = None) -> Session:
        """Load `context` once and ask it many questions: `with rlm.session(ctx) as s: s.completion(q)`.

        The REPL's variables persist between questions and the root conversation carries over;
        past `compact_at_tokens` (estimated prompt tokens; default from the model's window) the
        model summarises it and the summary replaces the older turns.
        """
        from rlm.session import Session

        return Session(self, context, compact_at_tokens)

    def _run_in_session(
        self,
        query: str,
        context: Any,
        output: Any,
        sandbox: Sandbox,
        note: str,
        conversation: Conversation,
    ) -> RLMResult:
        self._new_run()
        try:
            prediction = self.module(
                query=query, context=context, output=output, session=(sandbox, note), conversation=conversation
            )
        finally:
            self._write_outputs()
        return prediction.result

    async def _arun_in_session(
        self,
        query: str,
        context: Any,
        output: Any,
        sandbox: Sandbox,
        note: str,
        conversation: Conversation,
    ) -> RLMResult:
        self._new_run()
        try:
            prediction = await self.module.acall(
                query=query, context=context, output=output, session=(sandbox, note), conversation=conversation
            )
        finally:
            await asyncio.to_thread(self._write_outputs)
        return prediction.result

    # --- graph ---------------------------------------------------------------------------------------
    def get_graph(self) -> nx.DiGraph:
        """The call graph of the latest run (empty unless graph tracking is enabled)."""
        return self._graph.snapshot()

    def save_graph(self, path: str | Path) -> Path:
        """Write the graph: `.html` (offline interactive view), `.json` (node-link) or GraphML."""
        return self._graph.save(path)

    # --- history -------------------------------------------------------------------------------------
    def get_history(self) -> list[dict[str, Any]]:
        """Every LM call recorded since the last `clear_history()` (needs enable_history=True)."""
        return self._history.snapshot()

    def print_history(self, detailed: bool = False, max_length: int = 500, file: TextIO | None = None) -> None:
        self._history.print(detailed=detailed, max_length=max_length, file=file)

    def save_history(self, path: str | Path, pretty: bool = True) -> Path:
        return self._history.save(path, pretty=pretty)

    def clear_history(self) -> None:
        self._history.clear()

    # --- internals -----------------------------------------------------------------------------------
    def _new_run(self) -> None:
        with self._lock:
            if self.enable_graph_tracking:
                self._graph = CallGraph()

    def _dispatch(self, event: Event) -> None:
        if self.enable_graph_tracking:
            self._graph(event)
        if self.enable_history:
            self._history(event)
        if self._progress is not None:
            self._progress(event)
        if self.on_event is not None:
            self.on_event(event)

    def _write_outputs(self) -> None:
        if self.graph_output_path is not None:
            self._graph.save(self.graph_output_path)
        if self.history_output_path is not None:
            self._history.save(self.history_output_path)


def _refuse_settings_without_a_named_model(model: Any, recursive_model: Any, **settings: Any) -> None:
    """LM settings configure the models RLM builds from a name; a dspy.BaseLM object passes through
    untouched, so with no name given they would be dropped without a word."""
    if isinstance(model, str) or isinstance(recursive_model, str):
        return
    given = sorted(name for name, value in settings.items() if value is not None)
    if given:
        raise ConfigurationError(
            f"{', '.join(given)} configure models that RLM builds from a name, but model= (and recursive_model=) "
            "are LM objects, which are used as they are: set these on the LM object itself "
            "(e.g. dspy.LM('openai/gpt-4o-mini', temperature=0.2, num_retries=5)), or pass the model by name"
        )
