"""`rlm.batch` with the embedded runner: concurrency, resume, failure isolation, budgets, secrets."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

import rlm
from rlm.batch import load_results
from rlm.errors import APIKeyNotFoundError

ANSWER_FROM_CONTEXT = "```python\nFINAL(context.split()[0])\n```"


def items(n, prefix="q"):
    return [{"id": f"{prefix}{i}", "query": f"question {i}", "context": f"answer-{i} filler"} for i in range(n)]


def test_results_arrive_one_per_item_and_concurrent_items_overlap(make_lm, tmp_path):
    lm, _ = make_lm(lambda messages: ANSWER_FROM_CONTEXT, delay_s=0.4)
    started = time.perf_counter()
    results = list(rlm.batch(items(8), out=tmp_path / "r.jsonl", model=lm, concurrency=8))
    elapsed = time.perf_counter() - started
    assert sorted(r.answer for r in results) == sorted(f"answer-{i}" for i in range(8))
    assert all(r.ok and r.finish_reason == "final" and r.llm_calls == 1 for r in results)
    assert elapsed < 8 * 0.4  # one at a time would take at least 3.2 s
    rows = load_results(tmp_path / "r.jsonl")
    assert set(rows) == {f"q{i}" for i in range(8)} and rows["q3"]["answer"] == "answer-3"
    assert rows["q3"]["prompt_tokens"] == 100 and rows["q3"]["usage"]["scripted/root"]["calls"] == 1


def test_rerunning_skips_done_ids_and_retry_failed_reruns_the_failed_ones(make_lm, tmp_path):
    out = tmp_path / "r.jsonl"
    flaky = {"fail": True}

    def reply(messages):
        if "question 2" in messages[-1]["content"] and flaky["fail"]:
            raise RuntimeError("provider hiccup")
        return ANSWER_FROM_CONTEXT

    lm, engine = make_lm(reply)
    first = list(rlm.batch(items(4), out=out, model=lm))
    assert {r.id for r in first if not r.ok} == {"q2"}
    calls = len(engine.calls)
    again = rlm.batch(items(4), out=out, model=lm)
    assert list(again) == [] and again.stats.skipped == 4 and len(engine.calls) == calls
    flaky["fail"] = False
    retried = list(rlm.batch(items(4), out=out, model=lm, retry_failed=True))
    assert [(r.id, r.answer) for r in retried] == [("q2", "answer-2")]
    lines = out.read_text().splitlines()
    assert len(lines) == 4 and all(json.loads(line)["status"] == "ok" for line in lines)


def test_one_item_failing_in_any_way_is_recorded_on_it_and_the_rest_go_on(make_lm, tmp_path):
    def reply(messages):
        task = messages[-1]["content"]
        if "boom" in task:
            raise ConnectionError("the provider went away")
        if any("never-done" in m["content"] for m in messages):  # never answers: step after step until its time is up
            return "```python\nprint(len(context))\n```"
        return ANSWER_FROM_CONTEXT

    lm, _ = make_lm(reply, delay_s=0.2)
    batch_items = [
        *items(3),
        {"id": "provider", "query": "boom", "context": "x"},
        {"id": "timeout", "query": "never-done", "context": "x"},
        {"id": "unknown-setting", "query": "q", "context": "x", "max_widgets": 3},
        {"id": "batch-wide-setting", "query": "q", "context": "x", "model": "gpt-5"},
        {"id": "missing-file", "query": "q", "context_path": str(tmp_path / "gone.txt")},
    ]
    results = {r.id: r for r in rlm.batch(batch_items, out=tmp_path / "r.jsonl", model=lm, item_timeout=0.8)}
    assert all(results[f"q{i}"].ok for i in range(3))
    assert results["provider"].error_class is not None and "went away" in results["provider"].error
    assert results["timeout"].error_class == "TimeoutError" and "0.8 s" in results["timeout"].error
    assert results["unknown-setting"].error_class == "ConfigurationError"
    assert "max_widgets" in results["unknown-setting"].error and "max_llm_calls" in results["unknown-setting"].error
    assert "belong to the whole batch" in results["batch-wide-setting"].error
    assert results["missing-file"].error_class == "ContextError"
    rows = load_results(tmp_path / "r.jsonl")
    assert rows["timeout"]["status"] == "failed" and rows["q0"]["status"] == "ok"


def test_a_spent_batch_budget_stops_scheduling_and_a_rerun_picks_up_the_rest(make_lm, tmp_path):
    lm, _ = make_lm(lambda messages: ANSWER_FROM_CONTEXT)
    out = tmp_path / "r.jsonl"
    run = rlm.batch(items(10), out=out, model=lm, concurrency=2, budget_calls=4)
    done = list(run)
    assert 4 <= len(done) <= 5  # items already running when the budget ran out still finish
    assert run.stats.not_started == 10 - len(done) and run.budget.exhausted
    rest = list(rlm.batch(items(10), out=out, model=lm, concurrency=2))
    assert len(done) + len(rest) == 10 and len(load_results(out)) == 10


def test_a_shared_context_is_loaded_once_per_batch(make_lm, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("shared-answer " * 1000)
    lm, _ = make_lm(lambda messages: ANSWER_FROM_CONTEXT)
    questions = [{"id": str(i), "query": f"q{i}", "context_path": str(corpus)} for i in range(12)]
    run = rlm.batch(questions, model=lm, concurrency=4)
    assert {r.answer for r in run} == {"shared-answer"} and run.stats.context_loads == 1


def test_api_keys_never_reach_the_results_and_histories_are_written_per_item(make_lm, tmp_path, monkeypatch):
    monkeypatch.setenv("SOMEPROVIDER_API_KEY", "sk-secret-from-env-123")

    def reply(messages):
        if "leak" in messages[-1]["content"]:
            raise PermissionError("401 bad key sk-secret-from-env-123")
        return ANSWER_FROM_CONTEXT

    lm, _ = make_lm(reply)
    batch_items = [*items(2), {"id": "a/b c", "query": "leak", "context": "x"}]
    results = {r.id: r for r in rlm.batch(batch_items, out=tmp_path / "r.jsonl", model=lm, history_dir=tmp_path / "h")}
    assert "sk-secret-from-env-123" not in (tmp_path / "r.jsonl").read_text()
    assert "[redacted]" in results["a/b c"].error
    history = json.loads(Path(results["q1"].history_path).read_text())
    assert history and results["q1"].history_path.startswith(str(tmp_path / "h"))
    assert "/" not in results["a/b c"].history_path.rsplit("/", 1)[1][:-5].replace("_", "")


def test_settings_every_item_shares_are_checked_before_anything_runs(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(APIKeyNotFoundError):
        rlm.batch(items(2), out=tmp_path / "r.jsonl", model="gpt-4o-mini")
    assert not (tmp_path / "r.jsonl").exists()


def test_rlm_batch_is_callable_whichever_import_came_first():
    import rlm.batch.store  # binds the package to the name `batch` on `rlm`

    assert callable(rlm.batch) and rlm.batch.BatchResult is rlm.BatchResult


def test_an_item_timeout_stops_an_item_whose_step_only_spins(make_lm, tmp_path):
    # The item's step would run to its own limit (exec_timeout, 120 s here); its worker is killed
    # when item_timeout cancels the item, and the next item runs.
    lm, _ = make_lm(
        lambda messages: (
            "```python\nwhile True:\n    pass\n```" if "spin" in messages[-1]["content"] else ANSWER_FROM_CONTEXT
        )
    )
    started = time.perf_counter()
    spinning = [{"id": "spin", "query": "spin", "context": "x"}, *items(1)]
    results = {
        r.id: r for r in rlm.batch(spinning, out=tmp_path / "r.jsonl", model=lm, item_timeout=1.0, exec_timeout=120.0)
    }
    assert results["spin"].error_class == "TimeoutError" and results["q0"].ok
    assert time.perf_counter() - started < 60
