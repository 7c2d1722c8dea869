"""Sandboxes that hold a node's `context` and run the model's code; see `base.Sandbox`."""

from rlm.sandbox.base import ExecutionResult, Sandbox, SandboxLimits, SubcallHandler
from rlm.sandbox.registry import available_sandboxes, create_sandbox, register_sandbox, resolve_sandbox_name

__all__ = [
    "ExecutionResult",
    "Sandbox",
    "SandboxLimits",
    "SubcallHandler",
    "available_sandboxes",
    "create_sandbox",
    "register_sandbox",
    "resolve_sandbox_name",
]
