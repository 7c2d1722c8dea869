"""OOLONG-synth-like items: unlabelled questions, one per line with a user id and a date.

Follows OOLONG's `trec_coarse` construction as the paper uses it: each line is
`Date: <date> || User: <id> || Instance: <question>`, and the question's category (one of six TREC
labels) is never written down, so aggregate questions need a judgment per line. Question shapes:
counts (all lines, a date window, a set of users), most and least frequent label, and comparisons
between two labels. Counts are scored 0.75^|error|; labels and comparisons by meaning.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from datetime import date, timedelta

from rlm.benchmarks.paper.item import CHARS_PER_TOKEN, PaperItem
from rlm.benchmarks.paper.trec import LABELS, question

FIRST_DAY, DAYS = date(2022, 10, 1), 365  # OOLONG-Pairs' date conditions fall inside this year
PREAMBLE = (
    "The context holds general-knowledge questions, one per line. Each line has a date, a user id and a "
    "question (the 'instance'); each question's answer falls into one of 6 categories (labels): "
    + ", ".join(LABELS)
    + ". The data does not give the labels: infer each from the meaning of the question."
)
COMPARISONS = ("more common than", "less common than", "same frequency as")
KINDS = ("count", "count_date", "most_frequent", "compare", "count_users", "least_frequent")


@dataclass(frozen=True)
class Record:
    day: date
    user: int
    label: str
    text: str

    def line(self) -> str:
        return f"Date: {self.day.strftime('%b %d, %Y')} || User: {self.user} || Instance: {self.text}"


def make_records(rng: random.Random, size_tokens: int, n_users: int | None = None) -> list[Record]:
    """Lines until the text reaches `size_tokens` (~4 chars each); label frequencies differ by seed.

    A line is ~80 characters; by default one user per 8 lines."""
    budget = size_tokens * CHARS_PER_TOKEN
    n_users = n_users or max(8, budget // 80 // 8)
    users = sorted(rng.sample(range(10_000, 100_000), n_users))
    weights = [rng.uniform(0.4, 2.0) for _ in LABELS]
    records: list[Record] = []
    used = 0
    while used < budget:
        label = rng.choices(LABELS, weights)[0]
        record = Record(FIRST_DAY + timedelta(days=rng.randrange(DAYS)), rng.choice(users), label, question(label, rng))
        records.append(record)
        used += len(record.line()) + 1
    return records


def text_of(records: list[Record]) -> str:
    return "\n".join(r.line() for r in records)


def _unique_extreme(counts: Counter[str], most: bool) -> str | None:
    ranked = sorted(LABELS, key=lambda label: counts[label], reverse=most)
    return ranked[0] if counts[ranked[0]] != counts[ranked[1]] else None


def oolong(size_tokens: int, seed: int) -> PaperItem:
    """One OOLONG-like item; the question shape rotates with the seed."""
    rng = random.Random(f"oolong-{seed}")
    records = make_records(rng, size_tokens)
    counts = Counter(r.label for r in records)
    kind = KINDS[seed % len(KINDS)]
    if kind in ("most_frequent", "least_frequent"):
        label = _unique_extreme(counts, kind == "most_frequent")
        if label is None:  # a tie has no single answer: ask for a count instead
            kind = "count"
        else:
            which = "most" if kind == "most_frequent" else "least"
            query = f"Which of the labels is the {which} common among all the instances? Answer with the label."
            return _item(kind, query, records, label, "choice", size_tokens, seed, LABELS)
    label = rng.choice(LABELS)
    if kind == "count":
        query = f"How many instances should be classified as '{label}'? Answer with a number."
        return _item(kind, query, records, str(counts[label]), "numeric", size_tokens, seed)
    if kind == "count_date":
        cut = FIRST_DAY + timedelta(days=rng.randrange(60, DAYS - 60))
        before = rng.random() < 0.5
        chosen = [r for r in records if (r.day < cut if before else r.day > cut) and r.label == label]
        where = "before" if before else "after"
        query = (
            f"Considering only instances dated {where} {cut.strftime('%b %d, %Y')}, how many of them should be "
            f"classified as '{label}'? Answer with a number."
        )
        return _item(kind, query, records, str(len(chosen)), "numeric", size_tokens, seed)
    if kind == "count_users":
        users = sorted(rng.sample(sorted({r.user for r in records}), 5))
        chosen = [r for r in records if r.user in users and r.label == label]
        query = (
            f"Considering only instances of the users with ids {', '.join(map(str, users))}, how many of them "
            f"should be classified as '{label}'? Answer with a number."
        )
        return _item(kind, query, records, str(len(chosen)), "numeric", size_tokens, seed)
    first, second = rng.sample(LABELS, 2)
    a, b = counts[first], counts[second]
    answer = COMPARISONS[0] if a > b else COMPARISONS[1] if a < b else COMPARISONS[2]
    query = (
        f"Is the label '{first}' more common than, less common than, or the same frequency as the label "
        f"'{second}'? Answer with one of: more common than, less common than, same frequency as."
    )
    return _item("compare", query, records, answer, "choice", size_tokens, seed, COMPARISONS)


def _item(
    kind: str,
    query: str,
    records: list[Record],
    answer: str,
    scoring: str,
    size_tokens: int,
    seed: int,
    candidates: tuple[str, ...] = (),
) -> PaperItem:
    return PaperItem(
        "oolong", kind, f"{PREAMBLE}\n\n{query}", text_of(records), answer, scoring, size_tokens, seed, candidates
    )
