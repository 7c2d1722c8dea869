"""Scoring as the paper does it: 0.75^|error| for counts, labels by meaning, F1 over pairs, exact needles."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rlm.benchmarks.paper.item import PaperItem
from rlm.benchmarks.paper.scoring import choice_score, exact_number_score, numeric_score, pairs_f1, parse_pairs
from rlm.benchmarks.paper.trec import LABELS


@pytest.mark.parametrize(
    ("answer", "expected"),
    [("48", 1.0), ("There are 48 instances.", 1.0), ("Answer: 48", 1.0), ("47", 0.75), ("50", 0.75**2),
     ("none", 0.0), ("", 0.0)],
)  # fmt: skip
def test_counts_earn_three_quarters_per_unit_of_error(answer, expected):
    assert numeric_score(answer, 48) == pytest.approx(expected)


@given(st.integers(0, 500), st.integers(0, 500))
def test_numeric_score_is_075_to_the_absolute_error(gold, got):
    assert numeric_score(f"The count is {got}.", gold) == pytest.approx(0.75 ** abs(got - gold))


def test_a_sentence_naming_the_right_label_is_right_but_not_one_naming_several():
    assert choice_score("Label: entity", "entity", LABELS) == 1.0
    assert choice_score("The most common label is 'human being'.", "human being", LABELS) == 1.0
    assert choice_score("entity or location", "entity", LABELS) == 0.0
    assert choice_score("location", "entity", LABELS) == 0.0
    assert choice_score("identity", "entity", LABELS) == 0.0  # a word containing the label is not the label


def test_comparison_answers_are_scored_by_their_phrase():
    phrases = ("more common than", "less common than", "same frequency as")
    assert choice_score("'entity' is more common than 'location'", "more common than", phrases) == 1.0
    assert choice_score("It is less common than it.", "more common than", phrases) == 0.0


def test_file_names_and_values_match_as_whole_values():
    assert choice_score("It is defined in `tempfile.py`.", "tempfile.py", ("tempfile.py", "keyword.py")) == 1.0
    assert choice_score("tempfile.py or keyword.py", "tempfile.py", ("tempfile.py", "keyword.py")) == 0.0
    assert choice_score("0.5", "0", ("0", "None")) == 0.0
    assert choice_score("The default is 0.", "0", ("0", "None")) == 1.0


def test_exact_numbers_allow_only_the_gold_number():
    assert exact_number_score("The special magic number is 8598454.", 8598454) == 1.0
    assert exact_number_score("8598454 or 8598455", 8598454) == 0.0
    assert exact_number_score("4,698,280", 80) == 0.0


def test_pairs_are_scored_by_f1_with_order_and_duplicates_ignored():
    gold = {(1, 2), (2, 3), (4, 5), (6, 7)}
    assert pairs_f1("(1, 2)\n(2, 3)\n(4, 5)\n(6, 7)", gold) == 1.0
    assert pairs_f1("(2,1) (3, 2) (3,2)", gold) == pytest.approx(2 * 1.0 * 0.5 / 1.5)
    assert pairs_f1("(1, 2)\n(9, 9)\n(8, 10)", gold) == pytest.approx(2 * 0.5 * 0.25 / 0.75)
    assert pairs_f1("no pairs", set()) == 1.0 and pairs_f1("no pairs", gold) == 0.0
    assert parse_pairs("(5, 3), (3, 5)") == {(3, 5)}


def test_an_item_scores_with_its_own_rule_and_rejects_an_unknown_one():
    item = PaperItem("oolong", "count", "q", "ctx", "10", "numeric", 100, 0)
    assert item.score("9") == 0.75
    with pytest.raises(ValueError, match="unknown scoring"):
        PaperItem("x", "k", "q", "c", "1", "fuzzy", 1, 0).score("1")
