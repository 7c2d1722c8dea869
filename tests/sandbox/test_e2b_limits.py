"""The E2B adapter against the service's deadlines and limits, as the fake models them."""

from __future__ import annotations

import base64
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from e2b.exceptions import SandboxNotRunningException, TimeoutException

from rlm import SandboxError
from rlm.sandbox.base import SandboxLimits
from rlm.sandbox.e2b import E2BSandbox, sandbox, service
from tests.sandbox.fake_e2b import FakeSandbox, fresh_service


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.setattr(service, "BACKOFF_BASE_S", 0.02)
    yield fresh_service(monkeypatch)
    FakeSandbox.shutdown()


@pytest.fixture
def make_box(tmp_path, fake):
    def make(limits: SandboxLimits | None = None, **options) -> E2BSandbox:
        options.setdefault("api_key", "e2b-test")
        return E2BSandbox(limits, workdir=str(tmp_path / "rlm"), sdk=FakeSandbox, **options)

    return make


def echo(fn, args, kwargs):
    return f"{fn}:{args}"


# --- 2. timeouts -----------------------------------------------------------------------------------------
def test_the_step_deadline_is_kept_by_the_host_not_by_e2bs_doubled_timeout(make_box):
    box = make_box(SandboxLimits(exec_timeout=0.5))
    box.load("ctx")
    started = time.monotonic()
    result = box.execute("import time\ntime.sleep(60)", echo)
    # Far below the code's own 60 s. The time includes the replacement sandbox's start (a new kernel
    # process and the context's upload): a bound of 2 s failed on a loaded machine.
    assert time.monotonic() - started < 20
    assert result.restarted and result.error.startswith("TimeoutError: the step ran longer than 0.5 s")
    assert FakeSandbox.service.created[0].killed
    box.close()


def test_time_spent_answering_subcalls_is_not_the_steps_time(make_box):
    def slow_child(fn, args, kwargs):
        time.sleep(0.4)
        return "child done"

    box = make_box(SandboxLimits(exec_timeout=0.5))
    box.load("ctx")
    result = box.execute("for _ in range(3):\n    answer = recursive_llm('q', 'c')\nprint(answer)", slow_child)
    assert result.error is None and result.output == "child done\n"
    assert len(FakeSandbox.service.created) == 1
    box.close()


class _CustomTimeout(TimeoutException):
    """A TimeoutException subclass whose name the adapter has never seen."""


@pytest.mark.parametrize(
    "failure",
    [SandboxNotRunningException("The sandbox was not found"), _CustomTimeout("proxy gave up")],
    ids=["sandbox-not-running", "unseen-subclass"],
)
def test_the_sdks_timeout_exceptions_are_matched_by_class(make_box, monkeypatch, failure):
    box = make_box()
    box.load("ctx")

    def failing_run_code(self, code, **kwargs):
        raise failure

    monkeypatch.setattr(FakeSandbox, "run_code", failing_run_code)
    box._setup = lambda *args: None  # the replacement sandbox's set-up would fail the same way
    monkeypatch.setattr(box, "_upload_context", lambda: None)
    result = box.execute("x = 1", echo)
    assert result.restarted and result.error.startswith("SandboxLost: the E2B sandbox stopped")
    assert "TimeoutError" not in result.error
    box.close()


def test_a_sandbox_that_dies_mid_step_is_reported_lost_not_too_long(make_box):
    box = make_box(SandboxLimits(exec_timeout=5))
    box.load("kept")
    first = FakeSandbox.service.created[0]
    threading.Timer(0.3, first._expire).start()
    result = box.execute("import time\ntime.sleep(3)", echo)
    assert result.restarted and result.error.startswith("SandboxLost") and "TimeoutError" not in result.error
    assert box.execute("context", echo).output == "'kept'\n"
    box.close()


def test_a_sandbox_gone_between_steps_is_replaced_before_the_step(make_box):
    box = make_box()
    box.load("kept")
    FakeSandbox.service.created[0]._expire()
    result = box.execute("x = 1", echo)
    assert result.restarted and "had stopped" in result.error
    assert box.execute("context", echo).output == "'kept'\n"
    box.close()


# --- 3. large contexts ---------------------------------------------------------------------------------
def test_the_context_is_uploaded_as_a_gzip_stream(make_box):
    context = "the same line of a long document\n" * 200_000  # 6.6 MB
    box = make_box()
    box.load(context)
    (upload,) = FakeSandbox.service.created[0].writes
    assert upload.gzip and upload.streamed and upload.wire_bytes < len(context) / 20
    assert box.execute("len(context)", echo).output == f"{len(context)}\n"
    box.close()


def test_a_slow_upload_stops_at_a_size_scaled_deadline_with_a_sandbox_error(make_box, monkeypatch):
    monkeypatch.setattr(sandbox, "UPLOAD_BASE_S", 0.3)
    monkeypatch.setattr(sandbox, "UPLOAD_MIN_BYTES_PER_S", 10_000_000)
    FakeSandbox.service.upload_bytes_per_s = 20_000
    context = base64.b64encode(os.urandom(750_000)).decode()  # 1 MB that gzip barely shrinks: ~40 s here
    box = make_box()
    box.start()  # the sandbox's own start (a kernel process) is not the upload's time
    started = time.monotonic()
    with pytest.raises(SandboxError, match=r"uploading the context \(1.0 MB\) to E2B took longer than 0 s"):
        box.load(context)
    assert time.monotonic() - started < 10  # far below the whole upload's ~40 s, even on a loaded machine
    assert FakeSandbox.service.created[0].killed


def test_upload_failures_are_sandbox_errors(make_box, monkeypatch):
    box = make_box()
    box.start()
    FakeSandbox.service.created[0].expired = True
    with pytest.raises(SandboxError, match=r"uploading the context .* failed: SandboxNotRunningException"):
        box.load("ctx")
    box.close()


# --- 4. service limits -----------------------------------------------------------------------------------
def test_creation_keeps_a_process_wide_rate(make_box, monkeypatch):
    monkeypatch.setenv(service.CREATIONS_PER_SECOND_ENV, "8")
    FakeSandbox.service.creations_per_second = 8
    boxes = [make_box() for _ in range(10)]
    started = time.monotonic()
    threads = [threading.Thread(target=box.start) for box in boxes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(FakeSandbox.service.live()) == 10
    assert time.monotonic() - started >= 9 / 8 - 0.05
    for box in boxes:
        box.close()


def test_refused_creations_are_retried_with_backoff(make_box):
    FakeSandbox.service.max_concurrent = 1
    first, second = make_box(), make_box()
    first.start()
    threading.Timer(0.2, first.close).start()
    second.start()  # refused while the first lives, created once it is closed
    assert len(FakeSandbox.service.refused) >= 1 and len(FakeSandbox.service.live()) == 1
    second.close()


def test_creation_gives_up_after_the_cap_and_names_the_plans_limits(make_box):
    FakeSandbox.service.max_concurrent = 0
    with pytest.raises(SandboxError, match="max_live_sandboxes") as raised:
        make_box().start()
    assert len(FakeSandbox.service.refused) == service.CREATE_ATTEMPTS
    assert "maximum number of concurrent E2B sandboxes" in str(raised.value)


def test_a_refused_api_key_is_a_clear_error(make_box):
    FakeSandbox.service.api_keys = {"the-right-key"}
    with pytest.raises(SandboxError, match=r"E2B refused the API key .* check E2B_API_KEY"):
        make_box(api_key="a-wrong-key").start()


def test_sandboxes_live_briefly_and_are_extended_before_each_step(make_box):
    box = make_box()
    box.load("ctx")
    box.execute("x = 1", echo)
    box.execute("y = 2", echo)
    assert FakeSandbox.service.created[0].lifetimes == [sandbox.SANDBOX_LIFETIME_S] * 3
    assert sandbox.SANDBOX_LIFETIME_S <= 600
    box.close()


def test_a_parents_sandbox_outlives_a_slow_child(make_box):
    def slow_child(fn, args, kwargs):
        time.sleep(1.6)
        return "late answer"

    box = make_box(lifetime=1)
    box.load("ctx")
    result = box.execute("print(recursive_llm('q', 'c'))", slow_child)
    assert result.error is None and result.output == "late answer\n"
    assert len(FakeSandbox.service.created) == 1
    box.close()


def test_a_failing_kill_is_logged_and_the_sandbox_is_left_to_expire(make_box, caplog):
    box = make_box()
    box.load("ctx")
    FakeSandbox.service.kill_failures = 1
    with caplog.at_level(logging.WARNING):
        box.close()
    assert "could not kill E2B sandbox fake0" in caplog.text and "stops by itself within 300 s" in caplog.text
    assert not service.LIVE.owns(FakeSandbox.service.created[0])  # no longer extended


def test_sandboxes_still_open_at_interpreter_exit_are_killed(tmp_path):
    script = textwrap.dedent(
        f"""
        import atexit, os
        os.environ["RLM_E2B_CREATIONS_PER_SECOND"] = "1000"
        from tests.sandbox.fake_e2b import FakeSandbox
        atexit.register(lambda: print("killed:", [box.killed for box in FakeSandbox.service.created]))
        from rlm.sandbox.e2b import E2BSandbox
        box = E2BSandbox(api_key="k", workdir={str(tmp_path)!r}, sdk=FakeSandbox)
        box.load("never closed")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert "killed: [True]" in done.stdout, done.stderr


def test_memory_limit_mb_does_not_apply_and_says_so_once(fake, caplog, monkeypatch):
    monkeypatch.setattr(service, "_memory_warned", False)
    with caplog.at_level(logging.WARNING):
        E2BSandbox(SandboxLimits(memory_limit_mb=4096), api_key="k", sdk=FakeSandbox)
        E2BSandbox(SandboxLimits(memory_limit_mb=4096), api_key="k", sdk=FakeSandbox)
    assert caplog.text.count("memory_limit_mb=4096 does not apply to sandbox='e2b'") == 1
