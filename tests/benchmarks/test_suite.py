"""`rlm bench --suite paper` end to end against a local OpenAI-compatible server: table, JSON, PNG, causes."""

from __future__ import annotations

import json

import pytest

from rlm.benchmarks.harness import main


def run_bench(capsys, *args: str) -> tuple[int, str, str]:
    """`rlm bench ARGS` in this process (the CLI's parser and runner), with its stdout and stderr."""
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_paper_suite_writes_the_table_the_json_and_the_figure(openai_server, tmp_path, capsys, monkeypatch):
    def responder(body):
        system = body["messages"][0]["content"]
        if "Python REPL" in system:  # an RLM step: look, then answer with the length it printed
            if not any(m["role"] == "assistant" for m in body["messages"]):
                return "```python\nprint(len(context))\n```"
            return "```python\nFINAL(str(len(context)))\n```"
        return "I could not find it."  # the base model, asked directly

    server = openai_server(responder)
    report, figure, histories = tmp_path / "suite.json", tmp_path / "fig.png", tmp_path / "h"
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    code, stdout, stderr = run_bench(capsys, "--suite", "paper", "--sizes", "2000,4000", "--items", "1",
                                     "--methods", "rlm,rlm_no_sub,direct", "--model", "openai/test-model",
                                     "--api-base", server.base_url, "--json", str(report), "--plot", str(figure),
                                     "--history-dir", str(histories), "--max-iterations", "3")  # fmt: skip
    assert code == 0, stderr

    data = json.loads(report.read_text())
    assert set(data["table"]) == {"rlm", "rlm_no_sub", "direct"}
    assert set(data["table"]["rlm"]) == {"sniah", "oolong", "oolong_pairs", "codeqa"}
    assert all(row["items"] == 2 and row["mean_cost"] is None for row in data["table"]["direct"].values())
    assert set(data["curve"]["rlm"]["oolong"]) == {"2000", "4000"}
    outcomes = data["outcomes"]
    assert len(outcomes) == 4 * 2 * 3
    wrong_rlm = [o for o in outcomes if o["method"] in ("rlm", "rlm_no_sub") and o["score"] < 1]
    assert wrong_rlm and all(o["extra"]["cause"] for o in wrong_rlm)
    assert sum(data["failures"]["rlm"].values()) == sum(1 for o in wrong_rlm if o["method"] == "rlm")
    assert figure.read_bytes().startswith(b"\x89PNG")
    assert len(list(histories.glob("*-rlm.json"))) == 8 and len(list(histories.glob("*-rlm_no_sub.json"))) == 8

    assert "Table 1 shape" in stdout and "OOLONG-Pairs" in stdout
    assert "RLM (no sub-calls)" in stdout and "why RLM answers were wrong" in stdout
    # the ablation's instructions say nothing of the sub-call functions; the full RLM's do
    systems = {r["messages"][0]["content"] for r in server.requests if "Python REPL" in r["messages"][0]["content"]}
    assert any("llm_query" in s for s in systems) and any("llm_query" not in s for s in systems)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [("--methods", "rlm,magic", "unknown method(s) magic"), ("--benchmarks", "babi", "unknown benchmark(s) babi"),
     ("--sizes", "huge", "unknown size 'huge'")],
)  # fmt: skip
def test_suite_rejects_unknown_methods_benchmarks_and_sizes(capsys, option, value, message):
    code, _, stderr = run_bench(capsys, "--suite", "paper", option, value)
    assert code == 2 and message in stderr


def test_task_runs_name_the_cause_of_each_wrong_rlm_answer(openai_server, tmp_path, capsys, monkeypatch):
    def responder(body):  # prints a count, then answers with a number no output showed
        if not any(m["role"] == "assistant" for m in body["messages"]):
            return "```python\nprint(len(context.splitlines()))\n```"
        return 'FINAL("1234567")'

    server = openai_server(responder)
    report = tmp_path / "task.json"
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    code, stdout, stderr = run_bench(capsys, "--task", "needle", "--size", "2000", "--items", "1", "--methods", "rlm",
                                     "--model", "openai/test-model", "--api-base", server.base_url,
                                     "--max-iterations", "2", "--json", str(report))  # fmt: skip
    assert code == 0, stderr
    data = json.loads(report.read_text())
    (outcome,) = data["outcomes"]
    assert not outcome["correct"] and outcome["extra"]["cause"] in data["failures"]
    assert data["failures"][outcome["extra"]["cause"]] == 1 and "why RLM answers were wrong" in stdout
