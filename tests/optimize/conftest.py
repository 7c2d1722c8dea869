"""A scripted model that solves needle items with code and fails the others, for the optimizer's plumbing."""

from __future__ import annotations

import re

FOUND = re.compile(r"FOUND (\d+)")
SEARCH_REPLY = (
    "Search the context for the number.\n```python\nimport re\n"
    "m = re.search(r'magic number is (\\d+)', context)\nprint('FOUND', m.group(1) if m else None)\n```"
)


def needle_solver(messages: list[dict[str, str]]) -> str:
    """Searches with code on a needle task, then FINALs what the search printed; other tasks get a wrong answer."""
    last = messages[-1]["content"]
    found = FOUND.search(last)
    if found:
        return f'The search printed it.\n```python\nFINAL("{found.group(1)}")\n```'
    if "magic number" in last:
        return SEARCH_REPLY
    return 'FINAL("I do not know")'
