"""A worker that stalls, crashes or breaks the channel is killed and restarted with `context`;
the model reads one clear line about it, and nothing raises out of the host.

Most cases need code the policy would refuse (raw writes to the channel, a segfault), so they run
with the test-only `python_policy=False`, as a policy hole would let an attacker do.
"""

from __future__ import annotations

import time

import pytest

from rlm import RLM
from rlm.sandbox import registry
from rlm.sandbox.base import SandboxLimits
from rlm.sandbox.local import LocalSandbox

LIMITS = SandboxLimits(exec_timeout=3.0, memory_limit_mb=256, max_output_chars=2000)


def no_calls(fn, args, kwargs):
    raise AssertionError(f"unexpected host call {fn}")


@pytest.fixture
def unrestricted():
    box = LocalSandbox(LIMITS, python_policy=False)
    box.start()
    box.load("the context")
    yield box
    box.close()


def assert_back_to_work(box: LocalSandbox) -> None:
    result = box.execute("print(len(context))", no_calls)
    assert result.error is None and result.output == "11\n"


def test_a_segfault_is_named_and_the_worker_comes_back_with_its_context(unrestricted):
    unrestricted.execute("kept = 1", no_calls)
    result = unrestricted.execute("import ctypes\nctypes.string_at(0)", no_calls)
    assert result.restarted and "SIGSEGV" in result.error and "variables are gone" in result.error
    assert "memory exhaustion near the limit of 256 MB" in result.error  # a hint: crashes near the cap are common
    assert_back_to_work(unrestricted)
    assert "NameError" in (unrestricted.execute("print(kept)", no_calls).error or "")


def test_garbage_on_the_channel_is_a_misbehaving_worker_not_a_host_error(unrestricted):
    code = (
        "import os\n"
        "for fd in range(3, 12):\n"
        "    try:\n"
        "        os.write(fd, b'\\x00\\x00\\x00\\x05hello')\n"
        "    except OSError:\n"
        "        pass\n"
    )
    result = unrestricted.execute(code, no_calls)
    assert result.restarted and "misbehaved" in result.error and "malformed" in result.error
    assert_back_to_work(unrestricted)


def test_a_frame_header_announcing_gigabytes_is_refused(unrestricted):
    code = (
        "import os\n"
        "for fd in range(3, 12):\n"
        "    try:\n"
        "        os.write(fd, b'\\x7f\\xff\\xff\\xff')\n"
        "    except OSError:\n"
        "        pass\n"
        "import time\ntime.sleep(30)\n"
    )
    started = time.monotonic()
    result = unrestricted.execute(code, no_calls)
    assert time.monotonic() - started < 10
    assert result.restarted and "limit" in result.error
    assert_back_to_work(unrestricted)


def test_a_worker_that_never_reads_its_answer_cannot_block_the_host(unrestricted):
    # The code asks the host for a large answer through the channel and then never reads it.
    code = (
        "import os, json, struct, time\n"
        "frame = json.dumps({'type': 'call', 'fn': 'llm_query', 'args': ['x'], 'kwargs': {}}).encode()\n"
        "for fd in range(3, 12):\n"
        "    try:\n"
        "        os.write(fd, struct.pack('>I', len(frame)) + frame)\n"
        "    except OSError:\n"
        "        pass\n"
        "while True:\n"
        "    try:\n"
        "        time.sleep(100)\n"
        "    except BaseException:\n"
        "        pass\n"
    )
    started = time.monotonic()
    result = unrestricted.execute(code, lambda fn, args, kwargs: "y" * (16 << 20))
    assert time.monotonic() - started < LIMITS.exec_timeout + 8
    assert result.restarted
    assert_back_to_work(unrestricted)


def test_a_step_that_ignores_its_timeout_is_killed_and_the_worker_restarted(unrestricted):
    code = "import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\nwhile True:\n    pass\n"
    started = time.monotonic()
    result = unrestricted.execute(code, no_calls)
    assert time.monotonic() - started < LIMITS.exec_timeout + 5
    assert result.restarted and "TimeoutError" in result.error
    assert_back_to_work(unrestricted)


# --- with the policy on -----------------------------------------------------------------------------
@pytest.fixture
def restricted():
    box = LocalSandbox(LIMITS)
    box.start()
    box.load("the context")
    yield box
    box.close()


def test_a_lone_surrogate_in_output_and_answer_does_not_break_the_channel(restricted):
    result = restricted.execute("print('a\\ud800b')\nFINAL('x\\udfffy')", no_calls)
    assert result.error is None and result.output == "a?b\n" and result.final_answer == "x?y"
    assert_back_to_work(restricted)


def test_a_lone_surrogate_from_a_sub_model_reaches_the_code_without_breaking_it(restricted):
    result = restricted.execute("print(len(llm_query('q')))", lambda fn, args, kwargs: "bad \ud800 text")
    assert result.error is None and result.output == "10\n"


def test_data_nested_too_deep_is_an_error_in_the_code_not_a_lost_worker(restricted):
    code = "x = 'leaf'\nfor _ in range(500):\n    x = [x]\nllm_query_batched(x)"
    result = restricted.execute(code, no_calls)
    assert not result.restarted and "nested" in (result.error or "")
    assert_back_to_work(restricted)


def test_a_huge_answer_under_memory_pressure_keeps_the_channel_in_step(restricted):
    code = (
        "hog = []\n"
        "try:\n"
        "    while True:\n"
        "        hog.append(bytes(8 << 20))\n"
        "except MemoryError:\n"
        "    pass\n"
        "hog.pop(); hog.pop()\n"
        "try:\n"
        "    answer = llm_query('big')\n"
        "    print('got', len(answer))\n"
        "except MemoryError:\n"
        "    print('no room for the answer')\n"
        "hog = None\n"
    )
    result = restricted.execute(code, lambda fn, args, kwargs: "z" * (64 << 20))
    assert not result.restarted, result.error
    assert result.output in ("no room for the answer\n", f"got {64 << 20}\n")
    assert_back_to_work(restricted)


# --- through the engine -----------------------------------------------------------------------------
def test_a_crashing_worker_never_raises_out_of_run(make_lm):
    registry.register_sandbox("unrestricted-for-tests", lambda limits: LocalSandbox(limits, python_policy=False))
    lm, _ = make_lm(
        [
            "```repl\nimport ctypes\nctypes.string_at(0)\n```",
            "```repl\nprint(len(context))\n```",
            "```repl\nFINAL(str(len(context)))\n```",
        ]
    )
    try:
        result = RLM(model=lm, sandbox="unrestricted-for-tests").run("How long?", "0123456789")
    finally:
        registry._FACTORIES.pop("unrestricted-for-tests")
    assert result.answer == "10"
    assert "SIGSEGV" in (result.trajectory[0].error or "")


def test_a_reaped_worker_is_never_signalled_again(monkeypatch):
    # Its pid may already belong to an unrelated process: a killpg on the old number would kill that.
    import subprocess
    import sys

    from rlm.sandbox.local import processes

    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    signalled = []
    monkeypatch.setattr(processes.os, "killpg", lambda pid, sig: signalled.append(pid))
    processes.kill_now(done)
    assert signalled == []
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        processes.kill_now(running)
        assert signalled == [running.pid]
    finally:
        running.kill()
        running.wait()


SLOW_DEFINE = """
import sys, time
protocol = sys.modules['protocol']
send = protocol.send
def late(stream, message):
    if message.get('type') == 'defined':
        time.sleep(2.5)  # past the host's deadline for the request
    send(stream, message)
protocol.send = late
"""


def test_a_worker_that_answers_a_request_too_late_is_never_read_from_again(unrestricted, monkeypatch):
    import rlm.sandbox.local.sandbox as local_sandbox

    assert unrestricted.execute(SLOW_DEFINE, no_calls).error is None
    monkeypatch.setattr(local_sandbox, "START_TIMEOUT_S", 1.0)
    with pytest.raises(Exception, match="refused 'define': no answer"):
        unrestricted.define_tools(["lookup"])
    time.sleep(2.0)  # the late answer is on its way, or would be from a worker left alive
    # A worker left alive sent its late "defined" as the answer to this step's request.
    result = unrestricted.execute("print(len(context))", no_calls)
    assert result.error is None and result.output == "11\n", result
