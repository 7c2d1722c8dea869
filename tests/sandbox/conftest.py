"""Shared by the sandbox tests: a host handler that expects no calls, and a jailed worker with the
Python policy switched off (the test-only `python_policy=False`) to attack the OS jail alone."""

from __future__ import annotations

import pytest

from rlm.sandbox.base import SandboxLimits
from rlm.sandbox.local import LocalSandbox


def no_calls(fn, args, kwargs):
    raise AssertionError(f"unexpected host call {fn}")


@pytest.fixture(scope="module")
def unrestricted():
    box = LocalSandbox(SandboxLimits(exec_timeout=5.0, memory_limit_mb=256), python_policy=False)
    box.start()
    box.load("context")
    yield box
    box.close()
