"""Seeded, offline benchmark tasks with exact answers: structured records (OOLONG-style), a single
needle (S-NIAH-style), and a question that needs facts from two documents.

Every generator takes (size in tokens, seed) and returns `Item`s; sizes count ~4 characters per
token, the engine's own estimate. No downloads: all text is generated here.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from typing import Any

CHARS_PER_TOKEN = 4
SIZES = {"8k": 8_000, "60k": 60_000, "150k": 150_000, "1m": 1_000_000}

LABELS = ("billing", "shipping", "refund", "account", "technical", "feedback")
QUESTIONS = {
    "billing": ["Why was I charged twice this month?", "Can I get an invoice for my last order?",
                "How do I change the card on file?", "What is this unknown charge on my statement?"],
    "shipping": ["When will my parcel arrive?", "Can I change the delivery address?",
                 "My tracking number does not work.", "Do you ship to Iceland?"],
    "refund": ["How long does a refund take?", "I returned the item, where is my money?",
               "Can I get a refund for a gift?", "The refund amount is wrong."],
    "account": ["I cannot log in to my account.", "How do I delete my profile?",
                "Please reset my password.", "How do I change my email address?"],
    "technical": ["The app crashes when I open settings.", "The page shows error 500.",
                  "Sync stopped working after the update.", "Notifications arrive twice."],
    "feedback": ["Great service, thank you!", "The new design is hard to read.",
                 "Please add a dark mode.", "Support answered very quickly."],
}  # fmt: skip
WORDS = [
    "river",
    "stone",
    "quiet",
    "market",
    "lantern",
    "orchard",
    "harbor",
    "meadow",
    "copper",
    "violet",
    "signal",
    "garden",
    "window",
    "thunder",
    "paper",
    "engine",
    "silver",
    "forest",
    "ladder",
    "candle",
    "mirror",
    "valley",
    "winter",
    "summer",
    "basket",
    "tower",
    "planet",
    "canvas",
    "marble",
    "feather",
    "bridge",
    "desert",
    "island",
    "pocket",
    "rocket",
    "saddle",
    "shadow",
    "spiral",
]


@dataclass(frozen=True)
class Item:
    task: str
    query: str
    context: Any  # str, or dict of documents
    answer: str
    kind: str  # the question type, for per-type accuracy

    def score(self, prediction: str) -> bool:
        """Exact match after trimming case, spaces and a trailing period; numbers may sit in a sentence."""
        got = " ".join(str(prediction).strip().lower().rstrip(".").split())
        want = self.answer.lower()
        if got == want:
            return True
        if want.isdigit():  # "There are 48 records." counts; "48 or 49" does not
            numbers = [t for t in got.replace(",", " ").replace(".", " ").split() if t.isdigit()]
            return numbers == [want]
        return False


# --- OOLONG-style structured records -----------------------------------------------------------------


def _records(rng: random.Random, chars: int) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    users = [rng.randint(10000, 99999) for _ in range(max(20, chars // 2000))]
    weights = [rng.uniform(0.5, 2.0) for _ in LABELS]
    size = 0
    while size < chars:
        label = rng.choices(LABELS, weights)[0]
        record = {
            "date": f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
            "user": rng.choice(users),
            "label": label,
            "question": rng.choice(QUESTIONS[label]),
        }
        size += len(_record_line(record)) + 1
        records.append(record)
    return records


def _record_line(r: dict[str, Any]) -> str:
    return f"Date: {r['date']} || User: {r['user']} || Label: {r['label']} || Question: {r['question']}"


def oolong(size_tokens: int, seed: int) -> Item:
    """One structured-records item; the question type rotates with the seed."""
    rng = random.Random(seed)
    records = _records(rng, size_tokens * CHARS_PER_TOKEN)
    context = "\n".join(_record_line(r) for r in records)
    counts = Counter(r["label"] for r in records)
    kind = ("count", "most_frequent", "filter", "pair")[seed % 4]
    if kind == "count":
        label = rng.choice(LABELS)
        query = f"How many records have the label '{label}'? Answer with a number."
        answer = str(counts[label])
    elif kind == "most_frequent":
        query = "Which label occurs most often among the records? Answer with the label only."
        answer = counts.most_common(1)[0][0]
    elif kind == "filter":
        label, month = rng.choice(LABELS), rng.randint(1, 12)
        query = f"How many records dated in month {month:02d} of 2024 have the label '{label}'? Answer with a number."
        answer = str(sum(1 for r in records if r["label"] == label and r["date"][5:7] == f"{month:02d}"))
    else:
        a, b = rng.sample(LABELS, 2)
        users_a = {r["user"] for r in records if r["label"] == a}
        users_b = {r["user"] for r in records if r["label"] == b}
        query = (
            f"How many distinct users have at least one '{a}' record and at least one '{b}' record? "
            "Answer with a number."
        )
        answer = str(len(users_a & users_b))
    return Item("oolong", query, context, answer, kind)


def oolong_counting(size_tokens: int, seed: int) -> Item:
    """The counting question only (the issue's "counting task")."""
    rng = random.Random(seed)
    records = _records(rng, size_tokens * CHARS_PER_TOKEN)
    label = rng.choice(LABELS)
    return Item(
        "counting",
        f"How many records have the label '{label}'? Answer with a number.",
        "\n".join(_record_line(r) for r in records),
        str(sum(1 for r in records if r["label"] == label)),
        "count",
    )


# --- S-NIAH-style single needle ----------------------------------------------------------------------


def _filler(rng: random.Random, chars: int) -> list[str]:
    sentences, size = [], 0
    while size < chars:
        words = rng.choices(WORDS, k=rng.randint(6, 14))
        sentence = " ".join(words).capitalize() + "."
        sentences.append(sentence)
        size += len(sentence) + 1
    return sentences


def needle(size_tokens: int, seed: int) -> Item:
    rng = random.Random(seed)
    sentences = _filler(rng, size_tokens * CHARS_PER_TOKEN)
    number = rng.randint(1_000_000, 9_999_999)
    sentences.insert(rng.randint(0, len(sentences)), f"The magic number is {number}.")
    lines = [" ".join(sentences[i : i + 8]) for i in range(0, len(sentences), 8)]
    return Item(
        "needle", "What is the magic number? Answer with the number only.", "\n".join(lines), str(number), "needle"
    )


# --- a question across two documents -----------------------------------------------------------------

PEOPLE = ["Maria Lopez", "Tom Becker", "Aiko Tanaka", "Omar Haddad", "Lena Novak", "Ravi Menon",
          "Sofia Rossi", "Jonas Berg", "Chen Wei", "Amara Okafor", "Pablo Ruiz", "Ingrid Holm"]  # fmt: skip
CITIES = ["Oslo", "Lisbon", "Nairobi", "Montreal", "Osaka", "Tallinn", "Bogota", "Perth", "Zurich", "Dakar"]
PROJECTS = ["Falcon", "Juniper", "Atlas", "Nimbus", "Quartz", "Harbor", "Comet", "Orchid", "Summit", "Delta"]


def multidoc(size_tokens: int, seed: int) -> Item:
    """Who leads a project is in one document, where that person works is in another."""
    rng = random.Random(seed)
    people = rng.sample(PEOPLE, 10)
    projects = rng.sample(PROJECTS, 10)
    offices = {p: rng.choice(CITIES) for p in people}
    leads = dict(zip(projects, people, strict=True))
    n_docs = max(6, size_tokens // 2000)
    filler_each = size_tokens * CHARS_PER_TOKEN // n_docs
    docs: dict[str, str] = {}
    for i in range(n_docs):
        parts = _filler(rng, filler_each)
        if i == 1:
            for project, person in leads.items():
                parts.insert(rng.randint(0, len(parts)), f"Project {project} is led by {person}.")
        if i == n_docs - 2:
            for person, city in offices.items():
                parts.insert(rng.randint(0, len(parts)), f"{person} works in the {city} office.")
        docs[f"doc_{i:03d}.txt"] = " ".join(parts)
    project = rng.choice(projects)
    query = f"In which city is the office of the person who leads Project {project}? Answer with the city only."
    return Item("multidoc", query, docs, offices[leads[project]], "two_hop")


TASKS = {"oolong": oolong, "counting": oolong_counting, "needle": needle, "multidoc": multidoc}


def make_items(task: str, size: str, count: int, seed: int = 0) -> list[Item]:
    tokens = SIZES[size] if size in SIZES else int(size)
    return [TASKS[task](tokens, seed * 1000 + i) for i in range(count)]
