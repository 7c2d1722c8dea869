"""`python -m rlm.models.llama_server_main ARGS`: llama-cpp-python's server, with a cache bound that holds.

The bundled server keeps earlier prompts' states in llama-cpp-python's `LlamaRAMCache`
(`prompt_cache.llama_server_cache_args`). That cache bounds itself by the llama.cpp state bytes
alone, but every saved `LlamaState` also holds a copy of the logits buffer (n_batch x vocabulary
floats: 311 MB for the bundled model) and the token ids. Its "1 GiB" therefore grew the server to
21 GB of RSS in an afternoon of mixed runs (docs/BENCHMARKS.md). `BoundedRAMCache` counts what
each state really holds; everything else is the library's own server, run unchanged.

Kept as a subclass installed before the server starts, not a copy of the server: the server
builds its cache from `llama_cpp.LlamaRAMCache`, the one name replaced here.
"""

from __future__ import annotations

import runpy
import sys
from typing import Any


def state_bytes(state: Any) -> int:
    """What one saved state occupies: the llama.cpp state plus its logits and token arrays."""
    return int(state.llama_state_size) + held_bytes(state.scores) + held_bytes(state.input_ids)


def held_bytes(array: Any) -> int:
    """The memory behind `array`: a broadcast view (stride 0) holds one row, not all it shows."""
    held = int(array.itemsize)
    for length, stride in zip(array.shape, array.strides, strict=True):
        if stride != 0:
            held *= int(length)
    return held


def unused_logits(scores: Any) -> Any:
    """A read-only view of zeros shaped like `scores`, holding one row.

    With --logits_all false the server never writes logits rows (llama.cpp's sampler reads its
    own), yet each saved state carries a copy of the n_batch x vocabulary buffer (311 MB here),
    which `load_state` only copies back. The view keeps that shape, so restoring still works.
    """
    import numpy as np

    return np.broadcast_to(np.zeros(scores.shape[-1], dtype=scores.dtype), scores.shape)


def bounded_cache_class(keep_logits: bool = True) -> type:
    import llama_cpp.llama_cache as llama_cache

    class BoundedRAMCache(llama_cache.LlamaRAMCache):
        """`LlamaRAMCache` whose size counts every byte a state holds, so its LRU bound is real."""

        @property
        def cache_size(self) -> int:
            return sum(state_bytes(state) for state in self.cache_state.values())

        def __setitem__(self, key: Any, value: Any) -> None:
            if not keep_logits:
                value.scores = unused_logits(value.scores)
            super().__setitem__(key, value)

    return BoundedRAMCache


def logits_kept(argv: list[str]) -> bool:
    """Whether the server's arguments keep logits (llama-cpp-python's default does)."""
    if "--logits_all" not in argv[:-1]:
        return True
    return argv[argv.index("--logits_all") + 1].strip().lower() not in ("false", "0", "no")


def main(argv: list[str]) -> None:
    import llama_cpp

    cache = bounded_cache_class(keep_logits=logits_kept(argv))
    setattr(llama_cpp, "LlamaRAMCache", cache)  # noqa: B010 (a module attribute, replaced on purpose)
    sys.argv = ["llama_cpp.server", *argv]
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
