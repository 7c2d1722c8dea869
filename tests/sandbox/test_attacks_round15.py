"""Fifteenth attack round: the OS jail alone against kernel memory held by stacked seccomp filters,
the worker's pipes and folder listings, and what the host does with hostile frames: a forged
recursive_llm call whose slice nests past the protocol's limit, a frame sent after the result, and a
worker that exits while the host answers its call.

One hole (a strict xfail first; reproduction and cause in /tmp/s9/attack15/HOLES.md), closed the
same session: the worker could stack seccomp filters, each kernel memory outside RLIMIT_AS (3,600
filters, about 22 MB of slab and vmalloc), held for the worker's whole life, as round 12's Landlock
rules were. The worker's last filter (jail.seal_limits) now refuses seccomp and PR_SET_SECCOMP.
"""

from __future__ import annotations

import textwrap

import pytest

from rlm.sandbox.local import LocalSandbox, jail
from tests.sandbox.conftest import attempt, forged_frames, no_calls, run_with_first_step, x86_64_only

pytestmark = pytest.mark.skipif(not jail.probe().available, reason=f"no OS jail here: {jail.probe().problem}")


# --- OS jail alone: seccomp filters as kernel memory, pipes, listings --------------------------------------
STACK_FILTERS = """
insn = struct.pack('HBBI', 0x06, 0, 0, 0x7FFF0000)  # BPF_RET|BPF_K SECCOMP_RET_ALLOW
program = ctypes.create_string_buffer(insn)
class Prog(ctypes.Structure):
    _fields_ = [('len', ctypes.c_ushort), ('filter', ctypes.c_void_p)]
prog = Prog(1, ctypes.cast(program, ctypes.c_void_p))
stacked = 0
while stacked < 100000:
    try:
        sc(317, 1, 0, ctypes.byref(prog))  # seccomp(SECCOMP_SET_MODE_FILTER, 0, prog)
    except OSError as exc:
        if stacked == 0:
            raise
        break
    stacked += 1
result = stacked
"""


@x86_64_only
def test_the_worker_cannot_stack_seccomp_filters_as_kernel_memory():
    # A fresh worker: the filters stay attached for its whole life, and slow each of its syscalls.
    from rlm.sandbox.base import SandboxLimits

    with LocalSandbox(SandboxLimits(exec_timeout=20.0, memory_limit_mb=256), python_policy=False) as box:
        box.load("ctx")
        outcome = attempt(box, STACK_FILTERS)
    assert outcome.startswith("DENIED"), f"the worker attached filters: {outcome}"


@x86_64_only
def test_the_worker_cannot_stack_seccomp_filters_through_prctl(unrestricted):
    # Attached filters stay for the worker's life: one ALLOW filter only, so the shared worker goes on.
    outcome = attempt(
        unrestricted,
        STACK_FILTERS.replace("sc(317, 1, 0, ctypes.byref(prog))", "sc(157, 22, 2, ctypes.byref(prog))").replace(
            "stacked < 100000", "stacked < 1"
        ),
    )
    assert outcome.startswith("DENIED"), f"the worker attached a filter through prctl: {outcome}"
    assert unrestricted.execute("print(len(context))", no_calls).output == "7\n"


@x86_64_only
def test_the_workers_pipes_cannot_grow_past_the_users_pipe_limit(unrestricted):
    outcome = attempt(unrestricted, "result = fcntl.fcntl(4, 1031, 256 << 20)  # F_SETPIPE_SZ to 256 MiB")
    assert outcome.startswith("DENIED"), outcome


@pytest.mark.parametrize("folder", ["/tmp", "/work", "/root", "/home", "/var/run", "/dev/shm"])
def test_the_worker_cannot_list_host_folders(unrestricted, folder):
    outcome = attempt(unrestricted, f"result = os.listdir({folder!r})")
    assert outcome.startswith("DENIED"), outcome


# --- what the host does with hostile frames -----------------------------------------------------------------
def test_a_forged_recursive_llm_slice_nested_past_the_protocol_limit_never_ends_the_run(policy_off):
    deep = "[" * 600 + "]" * 600
    body = ('{"type": "call", "fn": "recursive_llm", "args": ["q", ' + deep + '], "kwargs": {}}').encode()
    step = forged_frames(body) + textwrap.dedent(
        """
        (size,) = struct.unpack('>I', os.read(3, 4))
        print('answered', size)
        """
    )
    assert run_with_first_step(step, max_depth=2, sandbox="restricted")[0] == "done"


def test_a_frame_sent_after_the_steps_result_never_ends_the_run(policy_off):
    result = b'{"type": "result", "output": "one", "error": null, "final": null}'
    extra = b'{"type": "call", "fn": "llm_query", "args": ["stale"], "kwargs": {}}'
    assert run_with_first_step(forged_frames(result, extra), sandbox="restricted")[0] == "done"


def test_a_worker_that_exits_while_the_host_answers_its_call_never_ends_the_run(policy_off):
    call = b'{"type": "call", "fn": "llm_query", "args": ["hello"], "kwargs": {}}'
    assert run_with_first_step(forged_frames(call, then_exit=True), sandbox="restricted")[0] == "done"
