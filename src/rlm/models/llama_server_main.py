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
    return int(state.llama_state_size) + int(state.scores.nbytes) + int(state.input_ids.nbytes)


def bounded_cache_class() -> type:
    import llama_cpp.llama_cache as llama_cache

    class BoundedRAMCache(llama_cache.LlamaRAMCache):
        """`LlamaRAMCache` whose size counts every byte a state holds, so its LRU bound is real."""

        @property
        def cache_size(self) -> int:
            return sum(state_bytes(state) for state in self.cache_state.values())

    return BoundedRAMCache


def main(argv: list[str]) -> None:
    import llama_cpp

    setattr(llama_cpp, "LlamaRAMCache", bounded_cache_class())  # noqa: B010 (a module attribute, replaced on purpose)
    sys.argv = ["llama_cpp.server", *argv]
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
