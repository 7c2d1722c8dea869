"""A fake of E2B's code-interpreter service, faithful where the adapter depends on it.

E2B's service cannot be reached from these machines. What the fake models, and from where:

- The SDK's own code and classes (e2b 2.63.0, e2b-code-interpreter 2.11.5): `run_code` turns the
  server's JSON lines into `Execution`/`Result`/`ExecutionError`/`OutputMessage` with the SDK's
  `parse_output`, calling the callbacks on the thread that called `run_code`, as the sync SDK does;
  timeouts, lost sandboxes, rate limits and auth failures are the SDK's exceptions, made by the
  SDK's own mappings (`format_exception`, `api_exception_from_code`, ...); `files.write` prepares
  the body with the SDK's `to_upload_body` (so `gzip=True` and file-likes behave as in the SDK) and
  keeps the SDK's deadline only for buffered (`str`/`bytes`) uploads.
- The kernel (code-interpreter's Jupyter kernel): a separate Python process per sandbox with a
  persistent namespace, under a locale whose default encoding is not UTF-8. stdout/stderr are
  buffered like ipykernel's `OutStream` and sent on `flush()` or `flush_interval` after a write,
  so one message holds several lines or part of one; with `split_flushes` a flush is also sent in
  random pieces. The trailing expression's value is
  the main result as `text/plain`, wrapped like IPython's pretty printer (not `repr` of the
  result). Cells run one at a time: a cell that timed out keeps running and keeps the kernel busy.
- The service (E2B's docs and the open E2B issue on run_code timeouts): `run_code` times out at
  `timeout_factor` (2x) the `timeout` passed; creation is rate-limited and live sandboxes are
  capped per account (429s); each sandbox has a lifetime that `set_timeout` resets and after which
  it is gone; `kill` can fail; unknown API keys are refused.
"""

from __future__ import annotations

import gzip as gzip_module
import itertools
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import httpx
from e2b.api import api_exception_from_code
from e2b.exceptions import SandboxNotFoundException, format_request_timeout_error, format_sandbox_unavailable_exception
from e2b.sandbox.filesystem.filesystem import FileType, WriteInfo, to_upload_body
from e2b_code_interpreter.constants import DEFAULT_TIMEOUT
from e2b_code_interpreter.exceptions import format_execution_timeout_error, format_sandbox_killed_error
from e2b_code_interpreter.models import Execution, format_exception, parse_output

_KERNEL = r'''
import ast, json, os, pprint, random, sys, threading, time, traceback

sys.stdin.reconfigure(encoding="utf-8")
_proto = os.fdopen(os.dup(1), "w", encoding="utf-8")
_null = os.open(os.devnull, os.O_WRONLY)
os.dup2(_null, 1)
os.dup2(_null, 2)
_send_lock = threading.RLock()
_cell = [0]
_rng = random.Random(int(sys.argv[1]))
FLUSH_INTERVAL = float(sys.argv[2])
SPLIT = sys.argv[3] == "1"


def _send(message):
    message["cell"] = _cell[0]
    with _send_lock:
        _proto.write(json.dumps(message) + "\n")
        _proto.flush()


def _pieces(text):
    if not SPLIT or len(text) < 2:
        return [text]
    cuts = sorted(_rng.sample(range(1, len(text)), min(len(text) - 1, _rng.randint(0, 2))))
    return [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]


class OutStream:
    """ipykernel's OutStream: text waits for flush() or for flush_interval after a write."""

    encoding = "utf-8"

    def __init__(self, name):
        self.name, self._buffer, self._timer = name, "", None

    def write(self, text):
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        with _send_lock:
            self._buffer += text
            if self._timer is None and text:
                self._timer = threading.Timer(FLUSH_INTERVAL, self.flush)
                self._timer.daemon = True
                self._timer.start()
        return len(text)

    def flush(self):
        with _send_lock:
            text, self._buffer = self._buffer, ""
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            for piece in _pieces(text) if text else []:
                _send({"type": self.name, "text": piece, "timestamp": time.time_ns()})

    def isatty(self):
        return False

    def writable(self):
        return True


def _plain(value):
    # IPython's text/plain: repr for scalars and strings, containers wrapped at 79 columns.
    if isinstance(value, (list, tuple, dict, set, frozenset)):
        return pprint.pformat(value, width=79, sort_dicts=False)
    return repr(value)


_out, _err = OutStream("stdout"), OutStream("stderr")
sys.stdout, sys.stderr = _out, _err
_namespace = {"__name__": "__main__", "__builtins__": __builtins__}
for _raw in sys.stdin:
    _request = json.loads(_raw)
    _cell[0] = _request["cell"]
    _result = _error = None
    try:
        _tree = ast.parse(_request["code"])
        _last = _tree.body.pop() if _tree.body and isinstance(_tree.body[-1], ast.Expr) else None
        exec(compile(_tree, "<cell>", "exec"), _namespace)
        if _last is not None:
            _value = eval(compile(ast.Expression(_last.value), "<cell>", "eval"), _namespace)
            if _value is not None:
                _result = {"type": "result", "text": _plain(_value), "is_main_result": True}
    except BaseException as _exc:  # IPython reports every exception of a cell, as the kernel does
        _error = {"type": "error", "name": type(_exc).__name__, "value": str(_exc),
                  "traceback": traceback.format_exc()}
    _out.flush()
    _err.flush()
    for _message in (_result, _error, {"type": "end"}):
        if _message is not None:
            _send(_message)
'''


# The kernel runs where the default encoding is not UTF-8 (C locale, no coercion), so code in the
# sandbox that opens text files without `encoding=` fails here, as it can on a template whose
# locale differs from ours.
_KERNEL_ENV = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0"}


@dataclass
class FakeService:
    """The account and the service: limits, fault switches, and what happened."""

    api_keys: set[str] | None = None  # None: any key works
    creations_per_second: float | None = None
    max_concurrent: int | None = None
    kill_failures: int = 0  # this many kill() calls fail first
    timeout_factor: float = 2.0  # run_code timeouts fire this many times later than asked
    flush_interval: float = 0.2  # ipykernel's default
    split_flushes: bool = True
    upload_bytes_per_s: float = 1e9
    seed: int = 0
    created: list[FakeSandbox] = field(default_factory=list)
    refused: list[Exception] = field(default_factory=list)
    _creations: list[float] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def live(self) -> list[FakeSandbox]:
        return [box for box in self.created if box.alive]


@dataclass
class Write:
    path: str
    gzip: bool
    streamed: bool
    wire_bytes: int


class _Files:
    def __init__(self, owner: FakeSandbox) -> None:
        self.owner = owner

    def write(self, path: str, data: Any, user: str | None = None, request_timeout: float | None = None,
              gzip: bool = False, use_octet_stream: bool | None = None, metadata: Any = None) -> WriteInfo:  # fmt: skip
        owner = self.owner
        if not owner.alive:
            raise format_sandbox_unavailable_exception(f"The sandbox {owner.sandbox_id} was not found")
        streamed = not isinstance(data, (str, bytes))
        body = to_upload_body(data, gzip)
        chunks: Iterable[bytes] = [body] if isinstance(body, bytes) else body  # type: ignore[assignment]
        # The SDK keeps a whole-request deadline only for buffered uploads.
        deadline = None if streamed else time.monotonic() + (request_timeout or 60.0)
        received = []
        for chunk in chunks:
            time.sleep(len(chunk) / owner.service.upload_bytes_per_s)
            if deadline is not None and time.monotonic() > deadline:
                raise format_request_timeout_error()
            if not owner.alive:
                raise format_sandbox_unavailable_exception(f"The sandbox {owner.sandbox_id} was not found")
            received.append(chunk)
        wire = b"".join(received)
        owner.writes.append(Write(path, gzip, streamed, len(wire)))
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(gzip_module.decompress(wire) if gzip else wire)
        return WriteInfo(name=target.name, type=FileType.FILE, path=path)


class FakeSandbox:
    """`e2b_code_interpreter.Sandbox`, the parts the adapter uses."""

    service: ClassVar[FakeService] = FakeService()

    def __init__(self, api_key: str | None, template: str | None, lifetime: float) -> None:
        self.api_key, self.template, self.lifetime = api_key, template, lifetime
        self.sandbox_id = f"fake{len(self.service.created)}"
        self.files = _Files(self)
        self.writes: list[Write] = []
        self.codes: list[str] = []
        self.lifetimes: list[float] = [lifetime]
        self.killed = self.expired = False
        self._cells = itertools.count(1)
        self._listeners: dict[int, queue.Queue[dict[str, Any] | None]] = {}
        self._lock = threading.Lock()
        self._kernel = subprocess.Popen(
            [sys.executable, "-c", _KERNEL, str(self.service.seed + len(self.service.created)),
             str(self.service.flush_interval), "1" if self.service.split_flushes else "0"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, encoding="utf-8", env=_KERNEL_ENV,
        )  # fmt: skip
        threading.Thread(target=self._read_kernel, daemon=True).start()
        self._expiry = self._arm(lifetime)

    @property
    def alive(self) -> bool:
        return not (self.killed or self.expired)

    # --- the SDK's surface -----------------------------------------------------------------------
    @classmethod
    def reset(cls, **settings: Any) -> FakeService:
        cls.shutdown()
        cls.service = FakeService(**settings)
        return cls.service

    @classmethod
    def shutdown(cls) -> None:
        for box in cls.service.created:
            box._stop()

    @classmethod
    def create(cls, template: str | None = None, timeout: int | None = None, **opts: Any) -> FakeSandbox:
        service = cls.service
        key = opts.get("api_key")
        with service._lock:
            refusal = None
            now = time.monotonic()
            recent = [t for t in service._creations if now - t < 1.0]
            if service.api_keys is not None and key not in service.api_keys:
                refusal = api_exception_from_code(401, "Invalid API key")
            elif service.creations_per_second is not None and len(recent) >= service.creations_per_second:
                refusal = api_exception_from_code(429, "Rate limit for sandbox creation exceeded")
            elif service.max_concurrent is not None and len(service.live()) >= service.max_concurrent:
                refusal = api_exception_from_code(
                    429, f"You have reached the maximum number of concurrent E2B sandboxes ({service.max_concurrent})"
                )
            if refusal is not None:
                service.refused.append(refusal)
                raise refusal
            service._creations.append(now)
            box = cls(key, template, timeout or 300)
            service.created.append(box)
        return box

    def kill(self, **opts: Any) -> bool:
        if self.service.kill_failures > 0:
            self.service.kill_failures -= 1
            raise api_exception_from_code(500, "internal error while killing the sandbox")
        if not self.alive:
            return False
        self.killed = True
        self._stop()
        return True

    def set_timeout(self, timeout: int, **opts: Any) -> None:
        if not self.alive:
            raise SandboxNotFoundException(f"Sandbox {self.sandbox_id} not found")
        self._expiry.cancel()
        self.lifetimes.append(timeout)
        self._expiry = self._arm(timeout)

    def run_code(self, code: str, language: str | None = None, context: Any = None, on_stdout: Any = None,
                 on_stderr: Any = None, on_result: Any = None, on_error: Any = None, envs: Any = None,
                 timeout: float | None = None, request_timeout: float | None = None) -> Execution:  # fmt: skip
        timeout = None if timeout == 0 else (timeout or DEFAULT_TIMEOUT)  # as the SDK reads it
        if not self.alive:
            raise format_exception(httpx.Response(502, text=f"The sandbox {self.sandbox_id} was not found"))
        self.codes.append(code)
        cell = next(self._cells)
        inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
        with self._lock:
            self._listeners[cell] = inbox
        try:
            assert self._kernel.stdin is not None
            self._kernel.stdin.write(json.dumps({"cell": cell, "code": code}) + "\n")
            self._kernel.stdin.flush()
        except OSError:
            raise format_sandbox_killed_error() from None
        if self._kernel.poll() is not None:
            raise format_sandbox_killed_error()
        deadline = None if timeout is None else time.monotonic() + timeout * self.service.timeout_factor
        execution = Execution()
        try:
            while True:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    message = inbox.get(timeout=left)
                except queue.Empty:
                    raise format_execution_timeout_error() from None
                if message is None:
                    raise format_sandbox_killed_error()
                if message["type"] == "end":
                    return execution
                parse_output(execution, json.dumps(message), on_stdout, on_stderr, on_result, on_error)
        finally:
            with self._lock:
                self._listeners.pop(cell, None)

    # --- internals -------------------------------------------------------------------------------
    def _arm(self, lifetime: float) -> threading.Timer:
        timer = threading.Timer(lifetime, self._expire)
        timer.daemon = True
        timer.start()
        return timer

    def _expire(self) -> None:
        self.expired = True
        self._stop()

    def _stop(self) -> None:
        self._expiry.cancel()
        if self._kernel.poll() is None:
            self._kernel.kill()
            self._kernel.wait()

    def _read_kernel(self) -> None:
        assert self._kernel.stdout is not None
        for raw in self._kernel.stdout:
            message = json.loads(raw)
            with self._lock:
                inbox = self._listeners.get(message.pop("cell"))
            if inbox is not None:  # the output of a cell nobody waits for any more is dropped
                inbox.put(message)
        with self._lock:
            for inbox in self._listeners.values():
                inbox.put(None)


def fresh_service(monkeypatch: Any, **settings: Any) -> FakeService:
    """A new fake service; the adapter's own creation throttle is opened up unless a test sets it."""
    monkeypatch.setenv("RLM_E2B_CREATIONS_PER_SECOND", "1000")
    return FakeSandbox.reset(**settings)
