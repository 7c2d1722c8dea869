"""Shared by the sandbox tests: a host handler that expects no calls, a jailed worker with the
Python policy switched off (the test-only `python_policy=False`) to attack the OS jail alone, and
one with the policy on, with the check that a policy route is refused."""

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


@pytest.fixture(scope="module")
def restricted():
    box = LocalSandbox(SandboxLimits(exec_timeout=3.0, memory_limit_mb=256, max_output_chars=2000))
    box.start()
    box.load("the context")
    yield box
    box.close()


def assert_refused_and_box_intact(box: LocalSandbox, code: str) -> None:
    """`code` fails, gives no answer, and the worker still holds its context (`restricted`'s)."""
    result = box.execute(code, no_calls)
    assert result.error is not None, f"not refused; output was {result.output!r}"
    assert result.final_answer is None
    assert box.execute("len(context)", no_calls).output == "11\n"
