"""`rlm batch` and `rlm view results.jsonl` as a user runs them, against a local OpenAI-compatible server."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rlm.batch import load_results

RLM_SCRIPT = Path(sys.executable).with_name("rlm")


def responder(body):
    return "```python\nFINAL(context.split()[0])\n```"


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and not k.startswith("RLM_")}
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    return env


def command(server, items, out, *extra):
    return [str(RLM_SCRIPT), "batch", str(items), "--out", str(out), "--model", "openai/test-model",
            "--api-base", server.base_url, *extra]  # fmt: skip


def write_items(path, n):
    rows = [{"id": f"item-{i}", "query": f"what is the first word? ({i})", "context": f"answer-{i} and more"}
            for i in range(n)]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def server(openai_server):
    return openai_server(responder, delay_s=0.05)


def test_batch_writes_a_row_per_item_prints_a_summary_and_view_prints_it_again(server, tmp_path):
    items = write_items(tmp_path / "items.jsonl", 5)
    out = tmp_path / "results.jsonl"
    result = subprocess.run(command(server, items, out, "-j", "3"), capture_output=True, text=True,
                            env=environment(), timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "5: 5 ok, 0 failed" in result.stdout and "batch 5/5 done" in result.stderr
    assert {i: r["answer"] for i, r in load_results(out).items()} == {f"item-{i}": f"answer-{i}" for i in range(5)}
    view = subprocess.run([str(RLM_SCRIPT), "view", str(out)], capture_output=True, text=True, timeout=60)
    assert view.returncode == 0 and "5: 5 ok, 0 failed" in view.stdout and "final 5" in view.stdout


def test_killed_at_random_moments_and_resumed_equals_a_clean_run(openai_server, tmp_path):
    # Slow enough replies that a whole run outlasts the kills on any machine (the run's own speed
    # must not decide whether the test kills anything).
    server = openai_server(responder, delay_s=0.3)
    items = write_items(tmp_path / "items.jsonl", 40)
    clean, resumed = tmp_path / "clean.jsonl", tmp_path / "resumed.jsonl"
    done = subprocess.run(command(server, items, clean, "-q", "-j", "4"), env=environment(), timeout=120)
    assert done.returncode == 0
    chance = random.Random(13)
    kills = 0
    for _ in range(4):
        process = subprocess.Popen(command(server, items, resumed, "-q", "-j", "4"), env=environment(),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        time.sleep(chance.uniform(1.5, 3.5))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait()
    assert kills >= 2, "the runs ended before they could be killed: make the items slower"
    final = subprocess.run(command(server, items, resumed, "-q", "-j", "4"), env=environment(), timeout=120)
    assert final.returncode == 0
    lines = resumed.read_bytes().decode().splitlines()
    rows = [json.loads(line) for line in lines]  # no torn row: every line parses
    assert len(rows) == len({r["id"] for r in rows}) == 40  # no duplicate
    expected = {i: r["answer"] for i, r in load_results(clean).items()}
    assert {r["id"]: r["answer"] for r in rows} == expected
    assert all(r["status"] == "ok" for r in rows)


def test_a_bad_items_file_is_a_usage_error(server, tmp_path):
    (tmp_path / "items.jsonl").write_text('{"id": 1, "query": "q"}\n')
    result = subprocess.run(command(server, tmp_path / "items.jsonl", tmp_path / "r.jsonl"), capture_output=True,
                            text=True, env=environment(), timeout=60)  # fmt: skip
    assert result.returncode == 2 and "exactly one of context" in result.stderr
