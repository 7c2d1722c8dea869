"""Stand-in for llama-cpp-python's cache module: the RAM cache the bundled server's launcher extends."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any


class LlamaRAMCache:
    def __init__(self, capacity_bytes: int = 2 << 30) -> None:
        self.capacity_bytes = capacity_bytes
        self.cache_state: OrderedDict[tuple[int, ...], Any] = OrderedDict()

    @property
    def cache_size(self) -> int:
        return sum(state.llama_state_size for state in self.cache_state.values())

    def __setitem__(self, key: tuple[int, ...], value: Any) -> None:
        self.cache_state[key] = value
        while self.cache_size > self.capacity_bytes and self.cache_state:
            self.cache_state.popitem(last=False)
