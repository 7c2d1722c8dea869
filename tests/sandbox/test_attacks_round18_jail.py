"""Eighteenth attack round, the OS jail alone (policy off): kernel objects the worker pins through
mappings of files it may read, and its own channel's pipes. Both held (no hole).

Round 18 in six files by topic (test_attacks_round18_*.py; this one: jail). The round found
seven holes as strict xfails (reproductions, causes and suggested fixes in
/tmp/s10/attack18/HOLES.md), all closed the same session.
"""

from __future__ import annotations

import textwrap

import pytest

from rlm.sandbox.base import SandboxLimits
from rlm.sandbox.local import LocalSandbox
from rlm.sandbox.local.kernel_memory import MAX_MAPPINGS
from tests.sandbox.conftest import LIBC_MMAP, PROBE_REPORT, RAW, attempt, needs_jail, no_calls, x86_64_only


def _file_mappings(count: int) -> str:
    """Map one page of a readable file `count` times, each through a descriptor of its own, then closed:
    every mapping holds its own struct file (and VMA) in the kernel."""
    return f"""{LIBC_MMAP}mapped = 0
for i in range({count}):
    fd = os.open(os.__file__, os.O_RDONLY)
    address = libc.mmap(None, 4096, 0, 2, fd, 0)  # PROT_NONE, MAP_PRIVATE
    os.close(fd)
    if address in (None, ctypes.c_void_p(-1).value):
        break
    mapped += 1
result = mapped
"""


@needs_jail
def test_a_worker_holding_files_open_through_many_mappings_is_replaced():
    # 16,000 such mappings held 6 MB of unreclaimable slab (measured with /proc/meminfo): past the
    # mapping bound the worker must be replaced, and the run's context be there again.
    with LocalSandbox(SandboxLimits(exec_timeout=30.0, memory_limit_mb=256), python_policy=False) as box:
        box.load("ctx")
        built = box.execute(
            "try:\n" + textwrap.indent(RAW + _file_mappings(MAX_MAPPINGS + 2000), "    ") + PROBE_REPORT,
            no_calls,
        )
        later = box.execute("print('result' in dir(), len(context))", no_calls)
    assert built.error is not None and "mappings" in built.error, built
    assert later.output == "False 3\n", later  # a fresh worker, holding the context


@needs_jail
@x86_64_only
@pytest.mark.parametrize("fd", [3, 4])
def test_the_worker_cannot_grow_its_channels_pipes_past_the_unprivileged_maximum(unrestricted, fd):
    # F_SETPIPE_SZ (1031) is allowed: a pipe's buffer is kernel memory outside the worker's cap
    outcome = attempt(unrestricted, f"result = fcntl.fcntl({fd}, 1031, 256 << 20)")
    assert outcome.startswith("DENIED: PermissionError"), outcome
    assert unrestricted.execute("print(len(context))", no_calls).output == "7\n"
