"""The fake E2B service behaves as the real SDK and service do where the adapter depends on it."""

from __future__ import annotations

import threading
import time

import pytest
from e2b.exceptions import (
    AuthenticationException,
    RateLimitException,
    SandboxException,
    SandboxNotFoundException,
    TimeoutException,
)
from e2b_code_interpreter.models import Execution, OutputMessage, Result

from tests.sandbox.fake_e2b import FakeSandbox


@pytest.fixture
def fake():
    yield FakeSandbox.reset()
    FakeSandbox.shutdown()


def test_output_arrives_in_flushes_not_lines(fake):
    fake.split_flushes = False
    box = FakeSandbox.create()
    messages: list[OutputMessage] = []
    code = "import sys\nprint('a')\nprint('b')\nprint('partial', end='')\nsys.stdout.flush()\nprint(' end')"
    box.run_code(code, on_stdout=messages.append)
    assert [message.line for message in messages] == ["a\nb\npartial", " end\n"]
    assert all(isinstance(message, OutputMessage) for message in messages)


def test_split_flushes_cut_lines_anywhere(fake):
    box = FakeSandbox.create()
    messages: list[OutputMessage] = []
    box.run_code("for i in range(20):\n    print('line', i, flush=True)", on_stdout=messages.append)
    assert "".join(m.line for m in messages) == "".join(f"line {i}\n" for i in range(20))
    assert any(not m.line.endswith("\n") for m in messages)


def test_callbacks_run_on_the_thread_that_called_run_code(fake):
    box = FakeSandbox.create()
    threads = set()
    box.run_code("print('x')", on_stdout=lambda message: threads.add(threading.current_thread()))
    assert threads == {threading.current_thread()}


def test_stderr_is_streamed(fake):
    box = FakeSandbox.create()
    errors: list[OutputMessage] = []
    execution = box.run_code("import sys\nprint('oops', file=sys.stderr)", on_stderr=errors.append)
    assert "".join(m.line for m in errors) == "oops\n" and all(m.error for m in errors)
    assert execution.logs.stderr


def test_results_are_the_sdks_classes_with_text_plain(fake):
    box = FakeSandbox.create()
    execution = box.run_code("list(range(40))")
    assert isinstance(execution, Execution) and isinstance(execution.results[0], Result)
    assert execution.results[0].is_main_result and execution.text.startswith("[0,\n 1,")
    failed = box.run_code("1 / 0")
    assert failed.error.name == "ZeroDivisionError" and "Traceback" in failed.error.traceback


def test_run_code_times_out_at_twice_the_timeout_and_the_cell_keeps_running(fake):
    box = FakeSandbox.create()
    started = time.monotonic()
    with pytest.raises(TimeoutException, match="Execution timed out"):
        box.run_code("import time\ntime.sleep(1.2)\nleft_running = True", timeout=0.3)
    assert 0.55 < time.monotonic() - started < 1.5
    started = time.monotonic()
    assert box.run_code("left_running").text == "True"  # queued behind the timed-out cell
    assert time.monotonic() - started > 0.3


def test_limits_auth_lifetime_and_a_failing_kill(fake):
    fake.api_keys, fake.creations_per_second, fake.max_concurrent = {"k"}, 2, 2
    with pytest.raises(AuthenticationException):
        FakeSandbox.create(api_key="wrong")
    first = FakeSandbox.create(api_key="k", timeout=1)
    FakeSandbox.create(api_key="k")
    with pytest.raises(RateLimitException):
        FakeSandbox.create(api_key="k")
    time.sleep(1.05)  # the rate window has passed; the first sandbox has reached its lifetime
    assert first.expired
    with pytest.raises(TimeoutException, match="was not found"):
        first.run_code("1")
    with pytest.raises(SandboxNotFoundException):
        first.set_timeout(10)
    third = FakeSandbox.create(api_key="k")
    with pytest.raises(RateLimitException, match="maximum number of concurrent"):
        FakeSandbox.create(api_key="k")
    fake.kill_failures = 1
    with pytest.raises(SandboxException):
        third.kill()
    assert third.kill() is True and third.kill() is False


def test_killing_a_running_cell_ends_run_code_with_the_sdks_error(fake):
    box = FakeSandbox.create()
    threading.Timer(0.2, box.kill).start()
    with pytest.raises(TimeoutException, match="sandbox was killed"):
        box.run_code("import time\ntime.sleep(5)")
