"""The results file: one complete row per id, whatever moment the writer was killed at."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rlm.batch import ResultStore, load_results
from rlm.errors import ConfigurationError


def row(item_id, status="ok", answer="a"):
    return {"id": item_id, "status": status, "answer": answer}


def test_a_torn_last_line_is_cut_off_on_open_and_appends_follow_complete_rows(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_bytes(b'{"id": "a", "status": "ok"}\n{"id": "b", "sta')
    with ResultStore(path) as store:
        assert list(store.rows) == ["a"]
        store.append(row("c"))
    assert [json.loads(line)["id"] for line in path.read_text().splitlines()] == ["a", "c"]


def test_the_last_row_of_an_id_wins_and_the_file_keeps_one_row_per_id(tmp_path):
    path = tmp_path / "results.jsonl"
    with ResultStore(path) as store:
        store.append(row("a", "failed", None))
        store.append(row("b"))
        store.append(row("a", "ok", "second try"))
    assert load_results(path)["a"]["answer"] == "second try"
    lines = path.read_text().splitlines()
    assert len(lines) == 2 and [json.loads(line)["id"] for line in lines] == ["b", "a"]


def test_a_second_writer_on_the_same_results_is_refused(tmp_path):
    with ResultStore(tmp_path / "r.jsonl"), pytest.raises(ConfigurationError, match="another `rlm batch`"):
        ResultStore(tmp_path / "r.jsonl").open()


def test_secrets_never_reach_the_file(tmp_path):
    path = tmp_path / "r.jsonl"
    with ResultStore(path, secrets=("sk-very-secret-key",)) as store:
        store.append({"id": "a", "error": "401: Incorrect API key provided: sk-very-secret-key"})
    assert "sk-very-secret-key" not in path.read_text() and "[redacted]" in path.read_text()


@given(
    ids=st.lists(st.sampled_from("abcdef"), min_size=1, max_size=12),
    cut=st.floats(min_value=0, max_value=1),
)
def test_cutting_the_file_at_any_byte_leaves_a_prefix_of_complete_rows(tmp_path_factory, ids, cut):
    path = tmp_path_factory.mktemp("cut") / "r.jsonl"
    lines = [json.dumps({"id": i, "n": n, "answer": "é" * n}) + "\n" for n, i in enumerate(ids)]
    data = "".join(lines).encode()
    path.write_bytes(data[: int(len(data) * cut)])  # a kill during any write
    whole = sum(1 for line in lines if len("".join(lines[: lines.index(line) + 1]).encode()) <= int(len(data) * cut))
    expected: dict[str, int] = {}
    for n, i in enumerate(ids[:whole]):
        expected.pop(i, None)
        expected[i] = n
    with ResultStore(path) as store:
        assert {i: r["n"] for i, r in store.rows.items()} == expected
    reread = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in reread] == list(expected)


def test_a_typed_value_is_written_as_json_data_and_the_next_rows_follow(tmp_path):
    path = tmp_path / "results.jsonl"
    with ResultStore(path) as store:
        store.append({**row("a"), "value": {(1, 2): {3, 4}}})  # json.dumps refuses a tuple key and a set
        store.append({**row("b"), "value": [1j, b"raw"]})
        store.append(row("c"))
    rows = load_results(path)
    assert rows["a"]["value"] == {"1,2": [3, 4]}
    assert rows["b"]["value"] == ["1j", "raw"] and rows["c"]["answer"] == "a"


def test_a_field_json_cannot_write_becomes_a_note_and_the_row_is_written(tmp_path):
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    path = tmp_path / "results.jsonl"
    with ResultStore(path) as store:
        store.append({"id": "a", "status": "ok", "llm_calls": 2, "meta": deep, "answer": "x"})
        store.append({"id": "b", "status": "ok", "meta": {"n": 10**5000}})
    rows = load_results(path)
    assert rows["a"]["meta"] == "<not writable: RecursionError>"
    assert rows["a"]["llm_calls"] == 2 and rows["a"]["answer"] == "x"
    assert rows["b"]["meta"] == "<not writable: ValueError>"


def test_the_summary_reads_rows_someone_else_edited_without_raising():
    from rlm.batch.progress import summary_table

    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    table = summary_table(
        [
            {"id": "a", "status": "ok", "llm_calls": "5", "wall_time_s": "abc", "finish_reason": deep},
            {"id": "b", "status": "failed", "llm_calls": 1, "cost": "1", "error_class": deep, "error": deep},
            {"id": "c", "status": "ok", "llm_calls": True, "prompt_tokens": 10**5000, "wall_time_s": float("inf")},
            {"id": "d", "status": "ok", "llm_calls": 2, "cost": 0.5, "prompt_tokens": 7, "wall_time_s": 1.5},
        ]
    )
    assert "LM calls        3" in table and "7 prompt" in table
    assert "$0.5000 (1 items unpriced)" in table and "b: <list>: <list>" in table
