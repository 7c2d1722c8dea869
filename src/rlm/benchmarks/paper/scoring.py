"""How the paper suite scores an answer: by meaning where the paper does, exactly where the task is exact.

- numbers (OOLONG counts): 0.75^|error|, as the paper and OOLONG score numeric answers;
- a choice among candidates (labels, comparison phrases, file or function names): right when the
  answer names the right candidate and no other one ("Label: entity" or "It is entity." is right;
  "entity or location" is not);
- pairs (OOLONG-Pairs): F1 between the pairs listed and the gold pairs;
- exact numbers (S-NIAH, CodeQA counts): the only number the answer gives is the gold one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_NUMBER = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?(?![\w])")
_PAIR = re.compile(r"\(\s*(\d+)\s*,\s*(\d+)\s*\)")


def numbers_in(text: str) -> list[int]:
    """The integers written in `text`, thousands separators allowed ("4,698,280")."""
    found = []
    for token in _NUMBER.findall(str(text)):
        token = token.rstrip(",").replace(",", "")
        try:
            found.append(int(float(token)))
        except ValueError:
            continue
    return found


def answered_number(text: str) -> int | None:
    """The number an answer gives: the one after its last ':' if any, else its last number (as the paper's parser)."""
    tail = str(text).rsplit(":", 1)[-1]
    for part in (tail, str(text)):
        found = numbers_in(part)
        if found:
            return found[-1]
    return None


def numeric_score(prediction: str, gold: int) -> float:
    """0.75 ** |error|: a near miss earns partial credit, a far one nearly none (OOLONG's rule)."""
    got = answered_number(prediction)
    return 0.0 if got is None else 0.75 ** abs(got - gold)


def exact_number_score(prediction: str, gold: int) -> float:
    """1 when every number in the answer is the gold number, else 0."""
    found = set(numbers_in(prediction))
    return 1.0 if found == {gold} else 0.0


def mentions(text: str, phrase: str) -> bool:
    """Whether `phrase` occurs in `text` as a whole value: "80" is not in "4,698,280", "0" not in "0.5"."""
    pattern = rf"(?<![\w.,]){re.escape(phrase.lower())}(?!\w|[.,]\d)"
    return re.search(pattern, text.lower()) is not None


def choice_score(prediction: str, gold: str, candidates: Iterable[str]) -> float:
    """1 when the answer names `gold` and no other of the `candidates` (case and quotes ignored)."""
    text = " ".join(str(prediction).lower().replace("`", " ").replace("'", " ").replace('"', " ").split())
    named = {c.lower() for c in {*candidates, gold} if mentions(text, c)}
    # "foo.py" names "foo" too: a candidate inside a longer named one is not a second answer
    named = {c for c in named if not any(c != other and c in other for other in named)}
    return 1.0 if named == {gold.lower()} else 0.0


def parse_pairs(text: str) -> set[tuple[int, int]]:
    """Every "(a, b)" in the answer, lower id first, duplicates and self-pairs dropped."""
    pairs = set()
    for a, b in _PAIR.findall(str(text)):
        x, y = int(a), int(b)
        if x != y:
            pairs.add((min(x, y), max(x, y)))
    return pairs


def pairs_f1(prediction: str, gold: set[tuple[int, int]]) -> float:
    """F1 between the pairs the answer lists and the gold pairs (1.0 when both are empty)."""
    got = parse_pairs(prediction)
    if not got and not gold:
        return 1.0
    hits = len(got & gold)
    if hits == 0:
        return 0.0
    precision, recall = hits / len(got), hits / len(gold)
    return 2 * precision * recall / (precision + recall)
