"""The settings of one RLM, gathered in a frozen dataclass passed down the layers.

Built once by the `RLM` facade; the engine and sandboxes read it and never change it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RLMConfig:
    max_depth: int = 5
    max_iterations: int = 20
    # Total LM calls allowed for the whole tree, a hard cap: root steps, sub-calls, batched items,
    # children's steps and every "answer now" step. One call is held back for the root's last answer.
    max_llm_calls: int = 200
    # Budgets over the whole tree, off when None: prompt + completion tokens, USD (from the price
    # table; calls of unpriced models count 0) and wall-clock seconds from the run's start. When one
    # is spent the root gets one last "answer now" step and `finish_reason` says which budget.
    max_tokens_total: int | None = None
    max_cost_usd: float | None = None
    max_time_s: float | None = None
    # Raise MaxIterationsError instead of asking for a last answer when iterations run out.
    strict: bool = False
    sandbox: str = "auto"
    # Per code execution: wall-clock seconds of the model's own code (sub-call time excluded).
    exec_timeout: float = 30.0
    # Wall-clock seconds of one step with the host's time on its sub-calls included: past it the
    # step's further sub-calls are refused, and a child node must finish within its parent's step.
    max_step_seconds: float = 300.0
    # Sandboxes (worker processes) alive at once across the whole tree; children past it wait.
    max_live_sandboxes: int = 16
    # Extra address space the sandbox worker may use on top of what the loaded context takes.
    memory_limit_mb: int = 1024
    # Printed output returned to the model per step; longer output keeps its head and tail.
    max_output_chars: int = 4000
    # A FINAL answer longer than this keeps its head and tail, with a marker saying what was cut.
    max_answer_chars: int = 100_000
    # LM requests in flight across the whole tree (root and children's steps, sub-calls, batched
    # items at any depth). 16, like the paper authors' `rlms`: hosted providers take it easily.
    max_concurrency: int = 16
    # Items one batched call may hold; a longer list is refused (the model splits it).
    max_batch_items: int = 256
    # Characters a sub-model prompt may hold: told to the model, and the cut for every sub-call
    # prompt (llm_query, batched items, a child's query, recursive_llm at max_depth).
    sub_prompt_chars: int = 100_000
    # Said to the model next to the sub-prompt size, e.g. that sub-calls are slow with this model.
    sub_model_note: str = ""
    # How many times the same code may run before the node is asked to answer.
    max_repeated_steps: int = 2
    # Estimated prompt tokens at which a root conversation (a session's, carried over between its
    # questions, or one long run's) is compacted into a summary the model writes (engine/conversation.py).
    # None: 60% of the model's input window where DSPy's model metadata knows it, else of 32,768.
    compact_at_tokens: int | None = None
    # Stop sequences for the models' REPL steps (not sub-calls). Empty for hosted models: some
    # reject `stop` (OpenAI's reasoning models), and large models stop after their block anyway.
    step_stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        from rlm.errors import ConfigurationError

        for name in (
            "max_depth",
            "max_iterations",
            "max_llm_calls",
            "max_concurrency",
            "max_output_chars",
            "max_live_sandboxes",
            "max_answer_chars",
            "max_batch_items",
            "sub_prompt_chars",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigurationError(f"{name} must be a positive integer, got {value!r}")
        if self.compact_at_tokens is not None and (
            not isinstance(self.compact_at_tokens, int)
            or isinstance(self.compact_at_tokens, bool)
            or self.compact_at_tokens < 1
        ):
            raise ConfigurationError(
                "compact_at_tokens must be a positive integer (or None for the model's window), "
                f"got {self.compact_at_tokens!r}"
            )
        for name in ("max_tokens_total", "max_cost_usd", "max_time_s"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
                raise ConfigurationError(f"{name} must be a positive number (or None for no budget), got {value!r}")
        if self.exec_timeout <= 0:
            raise ConfigurationError(f"exec_timeout must be positive seconds, got {self.exec_timeout!r}")
        if self.max_step_seconds <= 0:
            raise ConfigurationError(f"max_step_seconds must be positive seconds, got {self.max_step_seconds!r}")
        if self.memory_limit_mb < 64:
            raise ConfigurationError(f"memory_limit_mb must be at least 64, got {self.memory_limit_mb!r}")
