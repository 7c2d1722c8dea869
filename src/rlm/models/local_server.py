"""The bundled model's server: one per machine and port, shared by every process that uses it, stopped
when the last of them ends. Called by `RLM(model="local")` (through `ensure_local_server`) and by
`rlm serve-local`; the process itself is run by `local_guard.py`.

State lives in `<cache>/run/`: `server-PORT.lock` (flock: one process starts or attaches at a time,
and the guard decides to stop under it), `server-PORT.json` (the record a started server leaves:
guard pid, served model id) and `server-PORT.users/` (one locked file per process using it).
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rlm.errors import ConfigurationError
from rlm.models.local import EXPECTED_SHA256, INSTALL_HINT, cache_dir, model_path
from rlm.models.local_guard import RESTART_AFTER_UPTIME_S, live_users
from rlm.models.port_owner import foreign_listener, listener_uids
from rlm.models.prompt_cache import llama_server_cache_args

logger = logging.getLogger(__name__)

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8080
# The model's own window is 32k tokens; 16k keeps the KV cache modest on a 2-core machine.
DEFAULT_CONTEXT_TOKENS = 16384
# The id the server reports at /v1/models: a server on the port that reports another one is not
# ours, and is refused. llama.cpp's server answers any request model name (e.g. "local") with it.
SERVED_MODEL_ID = f"rlm-bundled-qwen2.5-coder-1.5b-instruct-q4_k_m-{EXPECTED_SHA256[:8]}"
LOG_CAP_BYTES = 4 << 20  # per file; one rotated file (.1) is kept beside it
_GUARD = Path(__file__).with_name("local_guard.py")


def default_threads() -> int:
    """RLM_LOCAL_THREADS, else half the usable cores (at most 8).

    Generation is memory-bound: on 2 cores, 2 threads fell under 1 token/s when another process was
    busy, while 1 thread kept 8-14 tokens/s (issue 15). Half the cores leaves room for the sandbox.
    """
    configured = os.environ.get("RLM_LOCAL_THREADS")
    if configured:
        threads = int(configured) if configured.isdigit() else 0
        if threads < 1:
            raise ConfigurationError(f"RLM_LOCAL_THREADS must be a positive integer, got {configured!r}")
        return threads
    return max(1, min(8, len(os.sched_getaffinity(0)) // 2))


class LocalServer:
    """llama-cpp-python's OpenAI-compatible server for the bundled model, on 127.0.0.1.

    `start()` makes this process one of the server's users, starting it if no one has; `stop()`
    ends that use. The server stops when no process uses it, however they ended.
    """

    def __init__(
        self,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        context_tokens: int = DEFAULT_CONTEXT_TOKENS,
        threads: int | None = None,
        log_cap_bytes: int = LOG_CAP_BYTES,
        restart_after_uptime_s: float = RESTART_AFTER_UPTIME_S,
    ) -> None:
        self.host, self.port = host, port
        self.restart_after_uptime_s = restart_after_uptime_s  # the guard restarts a server that served this long
        self.context_tokens = context_tokens
        self.threads = threads or default_threads()
        self.log_cap_bytes = log_cap_bytes
        self.process: subprocess.Popen[bytes] | None = None  # the guard, when this process started it
        self.log_path = cache_dir() / f"llama-server-{port}.log"
        run = cache_dir() / "run"
        self._lock_path = run / f"server-{port}.lock"
        self.record_path = run / f"server-{port}.json"
        self._users = run / f"server-{port}.users"
        self._user_file: Path | None = None
        self._user_fd: int | None = None
        self.shared = False  # attached to a server another process started

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def served_model(self, timeout: float = 10.0) -> str | None:
        """The model id the server on the port reports, or None if nothing answers as a server."""
        try:
            with urllib.request.urlopen(f"{self.base_url}/models", timeout=timeout) as reply:
                data = json.loads(reply.read())
            return str(data["data"][0]["id"])
        except (OSError, ValueError, KeyError, IndexError, TypeError):
            return None

    def is_up(self, timeout: float = 1.0) -> bool:
        return self.served_model(timeout) == SERVED_MODEL_ID

    def record(self) -> dict[str, Any] | None:
        """The running server this library started on the port (its guard alive), else None."""
        try:
            record = json.loads(self.record_path.read_text())
            guard_pid = int(record["guard_pid"])
            os.kill(guard_pid, 0)
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not _is_guard(guard_pid):  # the guard ended and its pid went to another process
            return None
        return record if isinstance(record, dict) else None

    # --- lifecycle -----------------------------------------------------------------------------------
    def start(self, wait_s: float = 180.0) -> None:
        """Use the server on the port, starting it if none runs; ConfigurationError if it cannot."""
        if self._user_fd is not None:
            return
        with self._state_lock():
            # Ours (its pid still runs our guard), possibly busy answering: no health timing needed.
            # Another user's listener beside it (on :: while ours is on 127.0.0.1) is refused, and
            # our live guard's record is left alone.
            if self.record() is not None:
                self.refuse_foreign_listener()
                self._register_user()
                self.shared = True
                return
            self.record_path.unlink(missing_ok=True)
            if _port_taken(self.host, self.port):
                self._check_foreign_server()
                return
            self._register_user()
            try:
                self._launch(wait_s)
            except BaseException:
                self._unregister_user()
                if self.process is not None:
                    _terminate(self.process)
                    self.process = None
                raise

    def stop(self, wait: bool = True, wait_s: float = 15.0) -> None:
        """Stop using the server; if no other process uses it, it stops (and `wait` waits for that)."""
        guard = self.record()
        self._unregister_user()
        process, self.process = self.process, None
        if not wait or guard is None:
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                return
            if self.record() is None or self._other_users():
                return
            time.sleep(0.1)

    def _launch(self, wait_s: float) -> None:
        require_server_package()
        gguf = model_path()
        spec = {
            "command": self.command(gguf),
            "users": str(self._users),
            "record": str(self.record_path),
            "lock": str(self._lock_path),
            "log": str(self.log_path),
            "log_cap": self.log_cap_bytes,
            "restart_after_uptime_s": self.restart_after_uptime_s,
        }
        # The guard is in its own session: a Ctrl-C or hang-up meant for the terminal reaches the
        # processes using the server, and the guard follows them through their user files.
        self.process = subprocess.Popen(
            [sys.executable, "-I", str(_GUARD), json.dumps(spec)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ConfigurationError(
                    f"the local model server exited at start on port {self.port}:\n{self.log_tail()}\n"
                    f"(full log: {self.log_path})"
                )
            served = self.served_model(timeout=2.0)
            if served == SERVED_MODEL_ID:
                # Another user's listener may have taken the port between the check and our bind.
                self.refuse_foreign_listener()
                record = {"guard_pid": self.process.pid, "port": self.port, "model": SERVED_MODEL_ID}
                self.record_path.write_text(json.dumps(record))
                return
            if served is not None:
                raise ConfigurationError(f"port {self.port} was taken by a server for {served!r} while ours started")
            time.sleep(0.3)
        raise ConfigurationError(f"the local model server did not answer within {wait_s:.0f} s; see {self.log_path}")

    def command(self, gguf: Path) -> list[str]:
        return [
            sys.executable,
            "-m",
            "rlm.models.llama_server_main",  # llama_cpp.server with a cache bound that holds
            "--model",
            str(gguf),
            "--model_alias",
            SERVED_MODEL_ID,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--n_ctx",
            str(self.context_tokens),
            "--n_threads",
            str(self.threads),
            "--n_threads_batch",
            str(self.threads),
            "--n_batch",
            "512",
            # The server's default (true) keeps every prompt token's logits: a float per vocabulary
            # entry (151,936 here, 0.6 MB a token), for logprobs that nothing here asks for. A
            # 7.4k-token prompt then held 4.5 GB of them, and each saved or restored state a copy.
            "--logits_all",
            "false",
            # Keeps the root's prompt state across interleaved sub-calls (docs/BENCHMARKS.md: a root
            # step after a sub-call 18.9 -> 10.7 s). A state costs its KV bytes (~29 kB a token for
            # this model) and, with logits_all false, no logits copy (llama_server_main), so 1 GiB
            # holds about ten 3k-token prompts.
            *llama_server_cache_args(1 << 30),
        ]

    def log_tail(self, lines: int = 8) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _check_foreign_server(self) -> None:
        served = self.served_model()
        if served == SERVED_MODEL_ID:
            self.refuse_foreign_listener()
            if listener_uids(self.host, self.port) is None:
                logger.warning(
                    "recursive-llm: using the server on %s that answers as the bundled model; this system "
                    "cannot tell which user runs it",
                    self.base_url,
                )
            else:
                logger.info("recursive-llm: using the bundled model's server already on %s", self.base_url)
            return  # started by hand: used, not managed
        what = f"a server for {served!r}" if served else "a program that is not an OpenAI-compatible model server"
        raise ConfigurationError(
            f"port {self.port} on {self.host} is held by {what}, not the bundled local model. Stop it, choose "
            f"another port with RLM_LOCAL_PORT (rlm serve-local --port), or point RLM_LOCAL_API_BASE at it "
            "to use that server deliberately."
        )

    def refuse_foreign_listener(self) -> None:
        """Another user's process answering as the bundled model would receive every prompt (the
        user's documents) and write every reply: the id it answers with is public."""
        uid = foreign_listener(self.host, self.port)
        if uid is not None:
            raise ConfigurationError(
                f"port {self.port} on {self.host} is held by another user's program (uid {uid}) that answers as the "
                "bundled local model; it would see every prompt. Choose another port with RLM_LOCAL_PORT "
                "(rlm serve-local --port), or point RLM_LOCAL_API_BASE at it to use that server deliberately."
            )

    @contextlib.contextmanager
    def _state_lock(self) -> Iterator[None]:
        self._users.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                logger.warning("recursive-llm: waiting for another process that is starting the local model server")
                fcntl.flock(fd, fcntl.LOCK_EX)  # bounded: the holder gives up after its own wait_s
            yield
        finally:
            os.close(fd)

    def _register_user(self) -> None:
        path = self._users / f"{os.getpid()}-{threading.get_ident()}-{id(self)}"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._user_file, self._user_fd = path, fd

    def _unregister_user(self) -> None:
        fd, path = self._user_fd, self._user_file
        self._user_fd = self._user_file = None
        if fd is not None and path is not None:
            path.unlink(missing_ok=True)
            os.close(fd)

    def _other_users(self) -> bool:
        return live_users(self._users, remove_stale=False) > 0


def _port_taken(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(2.0)
        return probe.connect_ex((host, port)) == 0


def _terminate(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGTERM)  # the guard stops its server on SIGTERM
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


_managed: LocalServer | None = None
_managed_lock = threading.Lock()


def require_server_package() -> None:
    """ConfigurationError naming the install when llama-cpp-python (the `[local]` extra) is absent."""
    if importlib.util.find_spec("llama_cpp") is None:
        raise ConfigurationError(f"llama-cpp-python's server is not installed: {INSTALL_HINT}")


def listener_check() -> Callable[[], None] | None:
    """What each request to the bundled server runs first: refuses once another user's process
    listens on its port. None when RLM_LOCAL_API_BASE names the server (the user's choice)."""
    if os.environ.get("RLM_LOCAL_API_BASE"):
        return None

    def check() -> None:
        server = _managed
        if server is not None:
            server.refuse_foreign_listener()

    return check


def _is_guard(pid: int) -> bool:
    """Whether `pid` runs our guard (Linux: its command line; elsewhere only that it lives)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return not Path("/proc/self").exists()  # no /proc here: what os.kill said stands
    except OSError:
        return False
    return _GUARD.name.encode() in command


def ensure_local_server() -> str:
    """The base URL of the local model server: RLM_LOCAL_API_BASE, else the bundled model's server on
    RLM_LOCAL_PORT (default 8080), shared with other processes or started now."""
    global _managed
    configured = os.environ.get("RLM_LOCAL_API_BASE")
    if configured:
        return configured
    port_setting = os.environ.get("RLM_LOCAL_PORT", str(DEFAULT_PORT))
    if not port_setting.isdigit() or not 0 < int(port_setting) < 65536:
        raise ConfigurationError(f"RLM_LOCAL_PORT must be a port number, got {port_setting!r}")
    with _managed_lock:
        if _managed is not None and _managed.port == int(port_setting):
            # Asked again (each RLM built): the server may have died and the port been taken since.
            _managed.refuse_foreign_listener()
            return _managed.base_url
        server = LocalServer(port=int(port_setting))
        if server.record() is None and not _port_taken(server.host, server.port):
            require_server_package()  # before announcing a start that cannot happen
            logger.warning(
                "recursive-llm: starting the local model server on %s (the first start takes a while)",
                server.base_url,
            )
        server.start()
        import atexit

        atexit.register(server.stop, wait=False)
        _managed = server
        return server.base_url
