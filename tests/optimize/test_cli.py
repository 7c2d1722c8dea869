"""`rlm optimize` and `--program`, run as subprocesses against a local OpenAI-compatible server."""

from __future__ import annotations

import json

from rlm.benchmarks.tasks import needle
from tests.cli.test_cli import run_cli
from tests.optimize.conftest import needle_solver


def model_args(server) -> list[str]:
    return ["--model", "openai/test-model", "--api-base", server.base_url]


def test_optimize_writes_a_program_that_ask_and_chat_put_in_the_prompt(openai_server, tmp_path):
    server = openai_server(lambda body: needle_solver(body["messages"]))
    program = tmp_path / "program.json"
    made = run_cli("optimize", "--out", str(program), "--tasks", "needle", "--items", "1", "--size", "600",
                   "--max-iterations", "4", *model_args(server))  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert "1 demos from 1 of 1 training runs" in made.stdout
    assert "train needle/needle seed 100: kept" in made.stderr
    saved = json.loads(program.read_text())
    assert saved["model"] == "openai/test-model" and len(saved["demos"]) == 1
    demo_reply = saved["demos"][0]["reply"]

    item = needle(600, seed=777)
    document = tmp_path / "doc.txt"
    document.write_text(item.context)
    server.requests.clear()
    asked = run_cli("ask", item.query, "-c", str(document), "--program", str(program), *model_args(server))
    assert asked.returncode == 0, asked.stderr
    assert asked.stdout.strip() == item.answer
    assert demo_reply in [m["content"] for m in server.requests[0]["messages"]]

    server.requests.clear()
    chatted = run_cli("chat", "-c", str(document), "--program", str(program), *model_args(server), stdin=item.query)
    assert chatted.returncode == 0, chatted.stderr
    assert demo_reply in [m["content"] for m in server.requests[0]["messages"]]


def test_ask_with_a_missing_program_exits_2_naming_the_file(openai_server, tmp_path):
    server = openai_server(lambda body: 'FINAL("x")')
    (tmp_path / "doc.txt").write_text("text")
    result = run_cli("ask", "q", "-c", str(tmp_path / "doc.txt"), "--program", str(tmp_path / "gone.json"),
                     *model_args(server))  # fmt: skip
    assert result.returncode == 2
    assert "gone.json' does not exist" in result.stderr and "rlm optimize --out" in result.stderr
    assert server.requests == []


def test_optimize_refuses_a_held_out_task(openai_server, tmp_path):
    server = openai_server(lambda body: 'FINAL("x")')
    result = run_cli("optimize", "--out", str(tmp_path / "p.json"), "--tasks", "counting", *model_args(server))
    assert result.returncode == 2
    assert "counting" in result.stderr and "held out" in result.stderr
    assert server.requests == [] and not (tmp_path / "p.json").exists()


def test_optimize_without_a_single_earned_run_says_so_and_fails(openai_server, tmp_path):
    server = openai_server(lambda body: 'FINAL("no idea")')
    result = run_cli("optimize", "--out", str(tmp_path / "p.json"), "--tasks", "needle", "--items", "1", "--size",
                     "600", "--max-iterations", "2", *model_args(server))  # fmt: skip
    assert result.returncode == 1
    assert "no training run earned its answer" in result.stderr


def test_batch_gives_every_item_the_program(openai_server, tmp_path):
    from rlm.optimize import Program

    demo = {"query": "Which colour?", "context_info": "A str.", "history": [], "reply": 'FINAL("teal, from the demo")'}
    program = Program(model="openai/test-model", demos=(demo,)).save(tmp_path / "p.json")
    server = openai_server(lambda body: "```python\nFINAL(str(len(context)))\n```")
    items = tmp_path / "items.jsonl"
    items.write_text(
        "".join(json.dumps({"id": f"i{n}", "query": "How long?", "context": "x" * n}) + "\n" for n in (3, 5))
    )
    result = run_cli("batch", str(items), "--out", str(tmp_path / "out.jsonl"), "--program", str(program), "-q",
                     *model_args(server))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert len(server.requests) == 2
    assert all(demo["reply"] in [m["content"] for m in body["messages"]] for body in server.requests)
