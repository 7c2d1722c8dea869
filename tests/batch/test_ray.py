"""The Ray runner on a local two-CPU cluster started here, against a local OpenAI-compatible server."""

from __future__ import annotations

import http.server
import os
import signal
from pathlib import Path

import pytest

import rlm
from rlm.batch import load_results

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.ray

ANSWER_FROM_CONTEXT = "```python\nFINAL(context.split()[0])\n```"


@pytest.fixture(scope="module", autouse=True)
def cluster():
    # One cluster for the module: starting Ray takes ~10 s. `rlm.batch` uses it and leaves it up.
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def model(server):
    return {"model": "openai/test-model", "api_base": server.base_url}


def test_items_run_as_ray_tasks_and_a_shared_context_is_put_once(openai_server, tmp_path):
    server = openai_server(lambda body: ANSWER_FROM_CONTEXT)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("corpus-word " + "filler " * 10_000)
    items = [{"id": f"c{i}", "query": f"question {i}", "context_path": str(corpus)} for i in range(8)]
    items += [{"id": f"i{i}", "query": "q", "context": f"inline-{i}"} for i in range(2)]
    run = rlm.batch(items, out=tmp_path / "r.jsonl", ray=True, concurrency=4, **model(server))
    results = {r.id: r for r in run}
    assert {results[f"c{i}"].answer for i in range(8)} == {"corpus-word"}
    assert [results[f"i{i}"].answer for i in range(2)] == ["inline-0", "inline-1"]
    assert run.stats.context_puts == 3  # the corpus once, each inline context once
    assert run.stats.worker_context_loads <= 3 + 4  # at most once per worker (4 at a time) and context
    assert len(load_results(tmp_path / "r.jsonl")) == 10


def test_api_keys_reach_the_workers_through_the_runtime_environment_and_never_the_results(
    openai_server, tmp_path, monkeypatch
):
    seen: list[str | None] = []
    parse = http.server.BaseHTTPRequestHandler.parse_request

    def parse_and_note(handler):
        ok = parse(handler)
        seen.append(handler.headers.get("Authorization"))
        return ok

    monkeypatch.setattr(http.server.BaseHTTPRequestHandler, "parse_request", parse_and_note)
    server = openai_server(lambda body: "```python\nFINAL('no key here: ' + context)\n```")
    items = [{"id": "k", "query": "q", "context": "x"}]
    [result] = rlm.batch(items, out=tmp_path / "r.jsonl", ray=True, api_key="sk-batch-secret-4242", **model(server))
    assert result.ok and seen == ["Bearer sk-batch-secret-4242"]
    assert "sk-batch-secret-4242" not in (tmp_path / "r.jsonl").read_text()


def test_a_worker_lost_mid_item_is_retried_by_ray(openai_server, tmp_path):
    killed: list[int] = []

    def responder(body):
        if not killed:  # the first request: kill the worker running the item, as a lost node would
            for pid in os.listdir("/proc"):
                if pid.isdigit() and Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::_run_item"):
                    os.kill(int(pid), signal.SIGKILL)
                    killed.append(int(pid))
        return ANSWER_FROM_CONTEXT

    server = openai_server(responder)
    items = [{"id": "victim", "query": "q", "context": "survived"}]
    [result] = rlm.batch(items, ray=True, concurrency=1, **model(server))
    assert killed and result.ok and result.answer == "survived"


def test_the_batch_budget_stops_scheduling_on_ray_too(openai_server, tmp_path):
    server = openai_server(lambda body: ANSWER_FROM_CONTEXT)
    items = [{"id": str(i), "query": "q", "context": f"w{i}"} for i in range(6)]
    run = rlm.batch(items, ray=True, concurrency=1, budget_calls=2, **model(server))
    assert len(list(run)) == 2 and run.stats.not_started == 4
