"""The settings of one RLM, gathered in a frozen dataclass passed down the layers.

Built once by the `RLM` facade; the engine and sandboxes read it and never change it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RLMConfig:
    max_depth: int = 5
    max_iterations: int = 20
    # Total LM calls allowed for the whole tree (root steps, sub-calls, children).
    max_llm_calls: int = 200
    # Raise MaxIterationsError instead of asking for a last answer when iterations run out.
    strict: bool = False
    sandbox: str = "auto"
    # Per code execution: wall-clock seconds of the model's own code (sub-call time excluded).
    exec_timeout: float = 30.0
    # Extra address space the sandbox worker may use on top of what the loaded context takes.
    memory_limit_mb: int = 1024
    # Printed output returned to the model per step; longer output keeps its head and tail.
    max_output_chars: int = 4000
    # Concurrency of llm_query_batched / recursive_llm_batched.
    max_concurrency: int = 8
    # Characters a sub-model prompt may hold: told to the model, and the cut for leaf sub-calls
    # (recursive_llm at max_depth), which put their whole slice into one prompt.
    sub_prompt_chars: int = 100_000
    # Said to the model next to the sub-prompt size, e.g. that sub-calls are slow with this model.
    sub_model_note: str = ""
    # How many times the same code may run before the node is asked to answer.
    max_repeated_steps: int = 2
    # Stop sequences for the models' REPL steps (not sub-calls). Empty for hosted models: some
    # reject `stop` (OpenAI's reasoning models), and large models stop after their block anyway.
    step_stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        from rlm.errors import ConfigurationError

        for name in ("max_depth", "max_iterations", "max_llm_calls", "max_concurrency", "max_output_chars"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigurationError(f"{name} must be a positive integer, got {value!r}")
        if self.exec_timeout <= 0:
            raise ConfigurationError(f"exec_timeout must be positive seconds, got {self.exec_timeout!r}")
        if self.memory_limit_mb < 64:
            raise ConfigurationError(f"memory_limit_mb must be at least 64, got {self.memory_limit_mb!r}")
