"""S-NIAH-like items (RULER's single needle in a haystack): one key's number hidden in filler text.

As in the paper's S-NIAH: a single "special magic number" for a key, placed at a seeded depth of a
haystack of 2^13 to 2^18 tokens; the answer is that number, scored by exact match.
"""

from __future__ import annotations

import random

from rlm.benchmarks.paper.item import CHARS_PER_TOKEN, PaperItem
from rlm.benchmarks.tasks import WORDS

KEY_WORDS = ["amber", "cobalt", "crimson", "ivory", "jade", "onyx", "scarlet", "teal", "umber", "azure",
             "falcon", "otter", "heron", "lynx", "bison", "marten", "plover", "gecko", "ibis", "tapir"]  # fmt: skip


def _haystack(rng: random.Random, chars: int) -> list[str]:
    sentences: list[str] = []
    size = 0
    while size < chars:
        sentence = " ".join(rng.choices(WORDS, k=rng.randint(6, 14))).capitalize() + "."
        sentences.append(sentence)
        size += len(sentence) + 1
    return sentences


def sniah(size_tokens: int, seed: int) -> PaperItem:
    rng = random.Random(f"sniah-{seed}")
    key = "-".join(rng.sample(KEY_WORDS, 2))
    number = rng.randint(1_000_000, 9_999_999)
    sentences = _haystack(rng, size_tokens * CHARS_PER_TOKEN)
    depth = rng.random()
    sentences.insert(int(depth * len(sentences)), f"One of the special magic numbers for {key} is: {number}.")
    lines = [" ".join(sentences[i : i + 8]) for i in range(0, len(sentences), 8)]
    query = (
        f"A special magic number for {key} is hidden in the text. What is the special magic number for {key}? "
        "Answer with the number only."
    )
    return PaperItem(
        "sniah", "single_needle", query, "\n".join(lines), str(number), "exact_number", size_tokens, seed,
        meta={"depth": round(depth, 3)},
    )  # fmt: skip
