"""The paper suite's generators: seeded, the stated size, gold answers the data really holds (recomputed here)."""

from __future__ import annotations

import ast
import functools
import random
import re
import sysconfig
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path

import pytest

from rlm.benchmarks.paper import BENCHMARKS, make_paper_items, parse_size
from rlm.benchmarks.paper.trec import LABELS, question

LINE = re.compile(r"Date: (\w{3} \d{2}, \d{4}) \|\| User: (\d+) \|\| Instance: (.+)")


@pytest.mark.parametrize("benchmark", sorted(BENCHMARKS))
def test_items_are_reproducible_by_seed_and_about_the_requested_size(benchmark):
    first, again = make_paper_items(benchmark, 8192, 2), make_paper_items(benchmark, 8192, 2)
    assert first == again
    assert first[0].query != first[1].query or first[0].context != first[1].context
    other_seed = make_paper_items(benchmark, 8192, 1, seed=7)[0]
    assert other_seed.context != first[0].context
    for item in first:
        assert 0.8 * 8192 * 4 <= item.context_chars() <= 1.1 * 8192 * 4


def test_sizes_follow_the_paper_powers_of_two_and_reject_nonsense():
    assert parse_size("8k") == 2**13 and parse_size("256k") == 2**18
    assert parse_size("60k") == 60_000 and parse_size("5000") == 5000
    with pytest.raises(ValueError, match="unknown size"):
        parse_size("lots")


@functools.cache
def _question_bank() -> dict[str, str]:
    """Every question text the bank can write, with its label (the templates' combinations, sampled densely)."""
    rng = random.Random(0)
    return {question(label, rng): label for _ in range(6000) for label in LABELS}


def _labelled_lines(context: str) -> list[tuple[datetime, int, str]]:
    """Each line's date, user and label, the label recovered from the question bank."""
    bank = _question_bank()
    rows = []
    for line in context.splitlines():
        day, user, text = LINE.fullmatch(line).groups()
        rows.append((datetime.strptime(day, "%b %d, %Y"), int(user), bank[text]))
    return rows


def test_every_question_text_has_one_label():
    rng = random.Random(1)
    owners = defaultdict(set)
    for _ in range(5000):
        for label in LABELS:
            owners[question(label, rng)].add(label)
    assert all(len(labels) == 1 for labels in owners.values())


def test_oolong_gold_answers_match_the_lines():
    items = make_paper_items("oolong", 8192, 6)
    assert {item.kind for item in items} >= {"count", "count_date", "compare", "count_users"}
    for item in items:
        rows = _labelled_lines(item.context)
        counts = Counter(label for _, _, label in rows)
        asked = item.query.split("\n\n")[-1]  # after the preamble
        label = (re.findall(r"'([a-z ]+)'", asked) or [""])[0]
        if item.kind == "count":
            assert int(item.answer) == counts[label]
        elif item.kind == "count_date":
            when, day = re.search(r"dated (before|after) (\w{3} \d{2}, \d{4})", item.query).groups()
            cut = datetime.strptime(day, "%b %d, %Y")
            want = sum(1 for d, _, lab in rows if lab == label and (d < cut if when == "before" else d > cut))
            assert int(item.answer) == want
        elif item.kind == "count_users":
            users = {int(u) for u in re.search(r"ids ([\d, ]+),", item.query).group(1).split(", ")}
            assert int(item.answer) == sum(1 for _, u, lab in rows if u in users and lab == label)
        elif item.kind == "most_frequent":
            assert item.answer == counts.most_common(1)[0][0]
        elif item.kind == "compare":
            a, b = re.findall(r"label '([a-z ]+)'", asked)
            want = "more common than" if counts[a] > counts[b] else "less common than"
            assert item.answer == (want if counts[a] != counts[b] else "same frequency as")


def test_oolong_pairs_gold_pairs_match_the_lines():
    for item in make_paper_items("oolong_pairs", 8192, 4):  # tasks 1-4: symmetric, task 4 with a date rule
        by_user: dict[int, list] = defaultdict(list)
        for day, user, label in _labelled_lines(item.context):
            by_user[user].append((day, label))
        wanted = {1: ("numeric value", "location"), 2: ("entity", "human being"),
                  3: ("description and abstract concept", "abbreviation"), 4: ("human being", "location")}  # fmt: skip
        labels = wanted[item.meta["task"]]

        def ok(rows, labels=labels, task=item.meta["task"]):
            has = any(lab in labels for _, lab in rows)
            if task == 4:
                return has and all(d > datetime(2023, 1, 6) for d, lab in rows if lab == "human being")
            return has

        users = sorted(u for u, rows in by_user.items() if ok(rows))
        gold = {(a, b) for i, a in enumerate(users) for b in users[i + 1 :]}
        assert item.score(item.answer) == 1.0
        assert {tuple(map(int, p)) for p in re.findall(r"\((\d+), (\d+)\)", item.answer)} == gold


def test_oolong_pairs_has_twenty_shapes_with_the_papers_wording():
    items = make_paper_items("oolong_pairs", 8192, 20)
    assert [item.meta["task"] for item in items] == list(range(1, 21))
    assert all("list all pairs of user IDs (no duplicate pairs, list lower ID first)" in i.query for i in items)
    assert sum(item.meta["gold_pairs"] > 0 for item in items) >= 15


def test_sniah_answer_is_the_single_needle():
    for item in make_paper_items("sniah", 8192, 3):
        key = re.search(r"number for ([\w-]+)\?", item.query).group(1)
        assert re.findall(rf"magic numbers for {key} is: (\d+)\.", item.context) == [item.answer]
        assert len(re.findall(r"\d{7}", item.context)) == 1


def test_codeqa_answers_are_what_ast_reads_from_the_stdlib_source():
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for item in make_paper_items("codeqa", 8192, 4):
        assert {name: (stdlib / name).read_text() for name in item.context} == item.context
        trees = {name: ast.parse(text) for name, text in item.context.items()}
        target = item.meta["file"]
        functions = {n.name: n for n in trees[target].body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
        if item.kind == "most_params":
            arity = {name: sum(isinstance(n, ast.arg) for n in ast.walk(fn.args)) for name, fn in functions.items()}
            assert item.answer == max(arity, key=arity.get)
        elif item.kind == "class_count":
            assert int(item.answer) == sum(isinstance(n, ast.ClassDef) for n in trees[target].body)
        elif item.kind == "defining_file":
            name = re.search(r"function '(\w+)'", item.query).group(1)
            owners = [f for f, t in trees.items() if any(getattr(n, "name", None) == name for n in t.body)]
            assert owners == [item.answer]
        else:
            param, fn = re.search(r"parameter '(\w+)' of the top-level function '(\w+)'", item.query).groups()
            signature = ast.unparse(functions[fn].args)
            value = re.search(rf"\b{param}=([^,]+)", signature).group(1)
            assert ast.literal_eval(value) == (item.answer if isinstance(ast.literal_eval(value), str)
                                               else ast.literal_eval(item.answer))  # fmt: skip
        assert item.meta["python"] and item.meta["file"] in item.context
