"""The paper's benchmarks, generated offline: S-NIAH, OOLONG, OOLONG-Pairs and CodeQA look-alikes.

`make_paper_items(benchmark, size_tokens, count, seed)` returns seeded `PaperItem`s with gold
answers derived by the generators; `rlm bench --suite paper` runs them (`benchmarks/suite.py`).
"""

from __future__ import annotations

from collections.abc import Callable

from rlm.benchmarks.paper.codeqa import codeqa
from rlm.benchmarks.paper.item import PaperItem
from rlm.benchmarks.paper.oolong import oolong
from rlm.benchmarks.paper.pairs import oolong_pairs
from rlm.benchmarks.paper.sniah import sniah

# Table 1's columns, in the paper's order of task complexity (S-NIAH is Figure 1's easiest task)
BENCHMARKS: dict[str, Callable[[int, int], PaperItem]] = {
    "sniah": sniah,
    "oolong": oolong,
    "oolong_pairs": oolong_pairs,
    "codeqa": codeqa,
}
TITLES = {"sniah": "S-NIAH", "oolong": "OOLONG", "oolong_pairs": "OOLONG-Pairs", "codeqa": "CodeQA"}
# Figure 1's context lengths, 2^13 to 2^18 tokens; other sizes are a number of tokens or "<n>k" (n x 1000)
PAPER_SIZES = {"8k": 2**13, "16k": 2**14, "32k": 2**15, "64k": 2**16, "128k": 2**17, "256k": 2**18}


def parse_size(size: str) -> int:
    """Tokens for a size name: 8k..256k are powers of two as in the paper, "60k" is 60,000, "5000" is 5,000."""
    text = size.strip().lower()
    if text in PAPER_SIZES:
        return PAPER_SIZES[text]
    if text.endswith("k") and text[:-1].isdigit():
        return int(text[:-1]) * 1000
    if text.isdigit() and int(text) > 0:
        return int(text)
    raise ValueError(f"unknown size {size!r}: use one of {', '.join(PAPER_SIZES)}, '<n>k' or a number of tokens")


def make_paper_items(benchmark: str, size_tokens: int, count: int, seed: int = 0) -> list[PaperItem]:
    if benchmark not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {benchmark!r}: use one of {', '.join(BENCHMARKS)}")
    return [BENCHMARKS[benchmark](size_tokens, seed * 1000 + i) for i in range(count)]


__all__ = ["BENCHMARKS", "PAPER_SIZES", "TITLES", "PaperItem", "make_paper_items", "parse_size"]
