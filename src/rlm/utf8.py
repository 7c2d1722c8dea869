"""Text the host takes in from outside made writable as UTF-8.

A lone surrogate ("\\ud800") has no UTF-8 form. Python's JSON parser makes one from an escape, so
a provider's reply or a sandbox's message can carry it past any strict decoding of bytes; then the
next LM request, the history file, the HTML graph or a batch row fails to write, and `run()` raises
(attack rounds 8 and 12). Provider replies (`engine/calls.py`) and sandbox messages (the local
channel, the E2B bridge) pass through here on their way in, so nothing downstream meets one.
"""

from __future__ import annotations

import re
from typing import Any

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
# A JSON escape that may decode to a lone surrogate; frames without one need no walk.
_ESCAPED_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")


def utf8_text(text: str) -> str:
    """`text` with lone surrogates replaced by '?', as the worker's own encoder does."""
    if text.isascii() or not _LONE_SURROGATE.search(text):
        return text
    return text.encode("utf-8", "replace").decode("utf-8")


def may_hold_surrogates(json_text: str) -> bool:
    """Whether parsing `json_text` can give a lone surrogate (it holds a surrogate escape)."""
    return _ESCAPED_SURROGATE.search(json_text) is not None


def utf8_values(value: Any) -> Any:
    """`value`, parsed JSON, with every string in it (dict keys included) made UTF-8-able; dicts
    and lists are repaired in place, without recursion (nesting is bounded, not shallow)."""
    if isinstance(value, str):
        return utf8_text(value)
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, list):
            for index, member in enumerate(item):
                if isinstance(member, str):
                    item[index] = utf8_text(member)
                elif isinstance(member, (list, dict)):
                    pending.append(member)
        elif isinstance(item, dict):
            for key, member in list(item.items()):
                fixed = utf8_text(key)
                if fixed is not key:
                    del item[key]
                if isinstance(member, str):
                    member = utf8_text(member)
                elif isinstance(member, (list, dict)):
                    pending.append(member)
                item[fixed] = member
    return value
