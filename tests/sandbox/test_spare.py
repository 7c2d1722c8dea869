"""The warm spare worker: the next sandbox gets a worker started before it asked, exactly as jailed
as a fresh one, holding nothing from any earlier sandbox, and dying with the host."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from rlm.sandbox.base import SandboxLimits
from rlm.sandbox.local import LocalSandbox

from .conftest import no_calls

WAIT_S = 15.0


def _workers() -> set[int]:
    """This process's live sandbox workers (spares included), from the kernel's process table."""
    pids: set[int] = set()
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/children") as children:
                pids.update(int(pid) for pid in children.read().split())
        except FileNotFoundError:  # the thread ended while we looked
            continue
    return {pid for pid in pids if _alive(pid) and b"worker.main" in _cmdline(pid)}


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return cmdline.read()
    except (FileNotFoundError, ProcessLookupError):
        return b""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def _spare_beside(boxes: list[LocalSandbox]) -> int:
    """Wait for a worker that no sandbox of the test uses: the spare."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        # Workers alive before the test began (another test's, still being reaped) are not its spare.
        spares = _workers() - _before_test - {box._process.pid for box in boxes if box._process is not None}
        if len(spares) == 1:
            return spares.pop()
        time.sleep(0.02)
    raise AssertionError("no spare worker was started")


def _wait_gone(pid: int) -> None:
    deadline = time.monotonic() + WAIT_S
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)


_before_test: set[int] = set()


@pytest.fixture
def boxes() -> Iterator[list[LocalSandbox]]:
    _before_test.clear()
    _before_test.update(_workers())
    made: list[LocalSandbox] = []
    yield made
    for box in made:
        box.close()


def _started(boxes: list[LocalSandbox], **options: object) -> LocalSandbox:
    box = LocalSandbox(**options)  # type: ignore[arg-type]
    boxes.append(box)
    box.start()
    return box


def test_the_next_sandbox_gets_a_worker_started_before_it_asked(boxes):
    first = _started(boxes)
    spare = _spare_beside(boxes)
    second = _started(boxes)
    assert second._process.pid == spare
    assert second.jail_layers == first.jail_layers
    second.load("the second context")
    assert second.execute("print(context)", no_calls).output == "the second context\n"


def test_a_spare_holds_nothing_from_an_earlier_sandbox(boxes):
    first = _started(boxes)
    first.load("the first secret")
    assert first.execute("kept = 'from the first'", no_calls).error is None
    used = first._process.pid
    first.close()
    _wait_gone(used)
    assert not _alive(used), "a used worker is killed, never kept as a spare"
    second = _started(boxes)
    assert second._process.pid != used
    second.load("the second context")
    assert "NameError" in (second.execute("kept", no_calls).error or "")
    assert second.execute("print(context)", no_calls).output == "the second context\n"


def test_a_spare_is_as_jailed_as_a_fresh_worker(boxes, monkeypatch):
    # Python policy off (test-only): what stops these is the OS jail alone.
    plain = {"limits": SandboxLimits(exec_timeout=5.0, memory_limit_mb=256), "python_policy": False}
    monkeypatch.setenv("RLM_SANDBOX_SPARE", "0")
    fresh = _started(boxes, **plain)
    monkeypatch.delenv("RLM_SANDBOX_SPARE")
    _started(boxes, **plain)
    spare = _spare_beside(boxes)
    from_spare = _started(boxes, **plain)
    assert from_spare._process.pid == spare
    assert from_spare.jail_layers == fresh.jail_layers and "seccomp" in from_spare.jail_layers
    for code in (
        "result = open('/etc/hostname').read()",
        "import socket\nresult = socket.socket()",
        f"import os\nresult = os.kill({os.getpid()}, 0)",
    ):
        result = from_spare.execute(code, no_calls)
        assert result.error is not None and "Error" in result.error, code
    with open(f"/proc/{spare}/environ", "rb") as environ:
        assert environ.read() == b""


def test_a_sandbox_of_another_configuration_never_gets_the_spare(boxes):
    _started(boxes)
    spare = _spare_beside(boxes)
    other = _started(boxes, limits=SandboxLimits(memory_limit_mb=300))
    assert other._process.pid != spare
    _wait_gone(spare)
    assert not _alive(spare), "one spare at most: the other configuration's replaces it"


def test_a_spare_that_died_while_waiting_is_not_handed_out(boxes):
    _started(boxes)
    spare = _spare_beside(boxes)
    os.kill(spare, signal.SIGKILL)
    _wait_gone(spare)
    second = _started(boxes)
    assert second._process.pid != spare
    assert second.execute("print(1 + 1)", no_calls).output == "2\n"


# A host script's start: one sandbox, and `workers()`, the processes the host's threads started.
HOST_WITH_A_SANDBOX = (
    "import os, time\n"
    "from rlm.sandbox.local import LocalSandbox\n"
    "box = LocalSandbox()\n"
    "box.start()\n"
    "def workers():\n"
    "    pids = set()\n"
    "    for task in os.listdir('/proc/self/task'):\n"
    "        pids.update(open(f'/proc/self/task/{task}/children').read().split())\n"
    "    return pids\n"
)


def test_no_spare_is_started_when_turned_off(tmp_path):
    script = tmp_path / "host.py"
    script.write_text(f"{HOST_WITH_A_SANDBOX}time.sleep(1.0)\nprint(len(workers()), flush=True)\n")
    env = {**os.environ, "RLM_SANDBOX_SPARE": "0"}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1"], "only the sandbox's own worker"


def test_spares_die_with_a_host_killed_by_sigkill(tmp_path):
    script = tmp_path / "host.py"
    script.write_text(
        f"{HOST_WITH_A_SANDBOX}"
        "deadline = time.monotonic() + 15\n"
        "while len(workers()) < 2 and time.monotonic() < deadline:\n"
        "    time.sleep(0.02)\n"
        "print(' '.join(workers()), flush=True)\n"
        "time.sleep(60)\n"
    )
    host = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(pid) for pid in host.stdout.readline().split()]
        assert len(pids) == 2, "the host should hold its sandbox's worker and a spare"
        assert all(_alive(pid) for pid in pids)
        host.kill()
        host.wait(5)
        for pid in pids:
            _wait_gone(pid)
        assert not any(_alive(pid) for pid in pids)
    finally:
        host.kill()
