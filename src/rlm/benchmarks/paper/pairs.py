"""OOLONG-Pairs-like items: "list all pairs of user ids where ...", scored by F1 over the pairs.

The paper (Zhang, Kraska & Khattab 2025, appendix "OOLONG-Pairs") builds 20 tasks over OOLONG's
`trec_coarse` data that ask for *all* pairs of users meeting a condition on their (unwritten)
labels, so the work grows with the square of the users. The 20 conditions below are reconstructed
from two public re-implementations that quote the appendix (the paper's text itself was not
readable here); they agree on every task except whether tasks 5, 7, 9 and 10 carry a date
condition, and we keep the date conditions. Tasks 1-10: both users meet the same condition;
11-20: one user meets condition A and the other condition B.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from datetime import date

from rlm.benchmarks.paper.item import CHARS_PER_TOKEN, PaperItem
from rlm.benchmarks.paper.oolong import PREAMBLE, Record, make_records, text_of
from rlm.benchmarks.paper.trec import LABELS

DESC, ENTITY, HUMAN, NUMERIC, LOCATION, ABBR = LABELS
SUFFIX = (
    "Each of the questions can be labelled as one of the labels (the data does not provide the labels, you need to "
    "figure out the label from the semantics of the question): " + ", ".join(LABELS) + ". In your answer, list all "
    "pairs in the format (user_id_1, user_id_2), separated by newlines."
)

# (label, "at_least" | "exactly", n): a user has at least / exactly n instances with that label
Count = tuple[str, str, int]


@dataclass(frozen=True)
class PairTask:
    number: int
    condition: str  # the task's words after "list all pairs of user IDs (... lower ID first)"
    either: tuple[str, ...] = ()  # symmetric: each user has an instance with one of these labels
    dated: tuple[str, str, date] | None = None  # symmetric: every instance with label is before/after a day
    role_a: tuple[Count, ...] = ()  # asymmetric: one user meets all of these ...
    role_b: tuple[Count, ...] = ()  # ... and the other all of these

    def query(self) -> str:
        return (
            "In the above data, list all pairs of user IDs (no duplicate pairs, list lower ID first) "
            f"{self.condition} {SUFFIX}"
        )


def _sym(number: int, a: str, b: str, phrase: str, dated: tuple[str, str, date] | None = None) -> PairTask:
    condition = f"where both users have at least one instance with {phrase}"
    if dated:
        label, when, day = dated
        article = "an" if label[0] in "aeiou" else "a"
        condition += (
            f", and all instances that are {article} {label} for both users must be {when} "
            f"{day.strftime('%B')} {day.day}, {day.year}"
        )
    return PairTask(number, condition + ".", either=(a, b), dated=dated)


def _asym(number: int, condition: str, role_a: tuple[Count, ...], role_b: tuple[Count, ...]) -> PairTask:
    return PairTask(number, condition, role_a=role_a, role_b=role_b)


def _one(label: str) -> Count:
    return (label, "at_least", 1)


TASKS: tuple[PairTask, ...] = (
    _sym(1, NUMERIC, LOCATION, "a numeric value or location"),
    _sym(2, ENTITY, HUMAN, "an entity or human being"),
    _sym(3, DESC, ABBR, "a description and abstract concept or abbreviation"),
    _sym(4, HUMAN, LOCATION, "a human being or location", (HUMAN, "after", date(2023, 1, 6))),
    _sym(5, ENTITY, NUMERIC, "an entity or numeric value", (ENTITY, "before", date(2023, 3, 15))),
    _sym(6, LOCATION, ABBR, "a location or abbreviation"),
    _sym(7, DESC, NUMERIC, "a description and abstract concept or numeric value", (NUMERIC, "after", date(2023, 2, 1))),
    _sym(8, HUMAN, DESC, "a human being or description and abstract concept"),
    _sym(9, ENTITY, LOCATION, "an entity or location", (LOCATION, "after", date(2023, 4, 10))),
    _sym(10, NUMERIC, ABBR, "a numeric value or abbreviation", (ABBR, "before", date(2023, 5, 20))),
    _asym(11, "such that one user has at least one instance with entity and one with abbreviation, and the other "
          "user has exactly one instance with entity.", (_one(ENTITY), _one(ABBR)), ((ENTITY, "exactly", 1),)),
    _asym(12, "such that one user has at least two instances with numeric value, and the other user has at least "
          "one instance with location and at least one instance with human being.",
          ((NUMERIC, "at_least", 2),), (_one(LOCATION), _one(HUMAN))),
    _asym(13, "such that one user has exactly one instance with description and abstract concept, and the other "
          "user has at least one instance with abbreviation and at least one instance with entity.",
          ((DESC, "exactly", 1),), (_one(ABBR), _one(ENTITY))),
    _asym(14, "such that one user has at least one instance with human being and at least one instance with numeric "
          "value, and the other user has exactly two instances with location.",
          (_one(HUMAN), _one(NUMERIC)), ((LOCATION, "exactly", 2),)),
    _asym(15, "such that one user has at least one instance with entity, at least one instance with location, and "
          "at least one instance with abbreviation, and the other user has exactly one instance with numeric value.",
          (_one(ENTITY), _one(LOCATION), _one(ABBR)), ((NUMERIC, "exactly", 1),)),
    _asym(16, "such that one user has at least one instance with description and abstract concept and at least one "
          "instance with human being, and the other user has at least two instances with entity and exactly one "
          "instance with abbreviation.", (_one(DESC), _one(HUMAN)), ((ENTITY, "at_least", 2), (ABBR, "exactly", 1))),
    _asym(17, "such that one user has exactly one instance with numeric value, and the other user has at least one "
          "instance with location and at least one instance with description and abstract concept.",
          ((NUMERIC, "exactly", 1),), (_one(LOCATION), _one(DESC))),
    _asym(18, "such that one user has at least one instance with abbreviation and exactly one instance with human "
          "being, and the other user has at least one instance with entity and at least one instance with numeric "
          "value.", (_one(ABBR), (HUMAN, "exactly", 1)), (_one(ENTITY), _one(NUMERIC))),
    _asym(19, "such that one user has at least two instances with location and at least one instance with entity, "
          "and the other user has exactly one instance with description and abstract concept and exactly one "
          "instance with abbreviation.", ((LOCATION, "at_least", 2), _one(ENTITY)),
          ((DESC, "exactly", 1), (ABBR, "exactly", 1))),
    _asym(20, "such that one user has at least one instance with numeric value and at least one instance with human "
          "being, and the other user has at least one instance with location, at least one instance with entity, "
          "and exactly one instance with abbreviation.", (_one(NUMERIC), _one(HUMAN)),
          (_one(LOCATION), _one(ENTITY), (ABBR, "exactly", 1))),
)  # fmt: skip


def _meets(records: list[Record], counts: tuple[Count, ...]) -> bool:
    for label, how, n in counts:
        have = sum(r.label == label for r in records)
        if (how == "exactly" and have != n) or (how == "at_least" and have < n):
            return False
    return True


def _eligible(task: PairTask, records: list[Record]) -> bool:
    if not any(r.label in task.either for r in records):
        return False
    if task.dated is None:
        return True
    label, when, day = task.dated
    return all((r.day > day if when == "after" else r.day < day) for r in records if r.label == label)


def gold_pairs(task: PairTask, records: list[Record]) -> set[tuple[int, int]]:
    by_user: dict[int, list[Record]] = defaultdict(list)
    for r in records:
        by_user[r.user].append(r)
    users = sorted(by_user)
    pairs = set()
    for i, u in enumerate(users):
        for v in users[i + 1 :]:
            a, b = by_user[u], by_user[v]
            if task.either:
                hit = _eligible(task, a) and _eligible(task, b)
            else:
                hit = (_meets(a, task.role_a) and _meets(b, task.role_b)) or (
                    _meets(b, task.role_a) and _meets(a, task.role_b)
                )
            if hit:
                pairs.add((u, v))
    return pairs


def oolong_pairs(size_tokens: int, seed: int) -> PaperItem:
    """One OOLONG-Pairs-like item: task (seed mod 20) + 1 over freshly generated lines."""
    rng = random.Random(f"oolong-pairs-{seed}")
    lines = size_tokens * CHARS_PER_TOKEN // 80
    # ~10 lines per user, so "exactly one instance" conditions both hold and fail; at most 60 users, so
    # the gold list stays in the hundreds of pairs, as the paper's (406 pairs for task 3 at 32k tokens)
    records = make_records(rng, size_tokens, n_users=min(60, max(12, lines // 10)))
    task = TASKS[seed % len(TASKS)]
    gold = sorted(gold_pairs(task, records))
    answer = "\n".join(f"({a}, {b})" for a, b in gold)
    return PaperItem(
        "oolong_pairs", f"task{task.number:02d}", f"{PREAMBLE}\n\n{task.query()}", text_of(records), answer, "pairs",
        size_tokens, seed, meta={"task": task.number, "gold_pairs": len(gold)},
    )  # fmt: skip
