"""The engine: one RLM node's REPL loop (`node`), its sub-calls, and the `RLMModule` DSPy module."""

from rlm.engine.module import RLMModule
from rlm.engine.result import RLMResult, StepRecord
from rlm.engine.step import ReplAdapter, RLMStep

__all__ = ["RLMModule", "RLMResult", "RLMStep", "ReplAdapter", "StepRecord"]
