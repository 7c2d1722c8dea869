"""Fourth attack round on the local sandbox: payloads the earlier rounds did not try.

The jail half runs plain Python in the worker (`python_policy=False`): pid-taking syscalls outside
the earlier lists (kcmp, sched_getattr, process_madvise, migrate_pages, move_pages,
sched_rr_get_interval, get_robust_list, rt_sigqueueinfo, pidfd_open), user- and group-wide
priority changes, memory that a memfd would hold outside the address-space limit, and the host's
API keys in the environment. Every probe was held. Each prints OK or DENIED; OK would be a hole.
"""

from __future__ import annotations

import os

import pytest

from rlm.sandbox.local import LocalSandbox, jail
from tests.sandbox.conftest import attempt, no_calls, x86_64_only

pytestmark = pytest.mark.skipif(not jail.probe().available, reason=f"no OS jail here: {jail.probe().problem}")


@pytest.fixture(scope="module")
def plain_box():
    os.environ["OPENAI_API_KEY"] = "sk-test-secret-round4"
    try:
        with LocalSandbox(python_policy=False) as box:
            box.load("ctx")
            yield box
    finally:
        del os.environ["OPENAI_API_KEY"]


@x86_64_only
@pytest.mark.parametrize(
    "action",
    [
        "result = sc(312, host, os.getpid(), 0, 0, 0)",  # kcmp
        "result = sc(315, host, buf, 56, 0)",  # sched_getattr
        "result = sc(440, 3, 0, 0, 0, 0)",  # process_madvise
        "result = sc(256, host, 64, buf, buf)",  # migrate_pages
        "result = sc(279, host, 0, 0, 0, 0, 0)",  # move_pages
        "result = sc(148, host, buf)",  # sched_rr_get_interval
        "result = sc(274, host, buf, buf)",  # get_robust_list
        "result = sc(129, host, 0, buf)",  # rt_sigqueueinfo
        "result = sc(434, host, 0)",  # pidfd_open
        "result = sc(251, 3, os.getuid(), 0)",  # ioprio_set for the whole user
        "result = os.setpriority(os.PRIO_USER, os.getuid(), 19)",
        "result = os.setpriority(os.PRIO_PGRP, 0, 19)",
    ],
)
def test_pid_and_user_wide_syscalls_are_refused(plain_box, action):
    assert "DENIED" in attempt(plain_box, action)


def test_memfd_cannot_hold_memory_outside_the_address_space_limit(plain_box):
    out = attempt(plain_box, "fd = os.memfd_create('x')\nresult = os.write(fd, b'x' * (1 << 20))")
    assert "DENIED" in out


def test_host_api_key_is_not_in_the_worker_environment(plain_box):
    out = attempt(plain_box, "result = [k for k in os.environ if 'KEY' in k] or open('/proc/self/environ').read()")
    assert "sk-test-secret" not in out
    assert "OPENAI_API_KEY" not in out


def test_policy_repl_function_and_time_facade_hide_internals():
    with LocalSandbox() as box:
        box.load("ctx")
        result = box.execute("print(getattr(FINAL, '_function', 'hidden'), dir(FINAL))", no_calls)
        assert result.output.strip() == "hidden []", (result.output, result.error)
        result = box.execute("import time\nprint(getattr(time.time, '__self__', 'hidden'))", no_calls)
        assert result.output.strip() == "hidden", (result.output, result.error)
