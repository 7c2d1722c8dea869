"""The local sandbox: a RestrictedPython REPL in an isolated, resource-limited worker process."""

from rlm.sandbox.local.sandbox import LocalSandbox

__all__ = ["LocalSandbox"]
