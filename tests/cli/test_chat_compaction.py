"""`rlm chat` over a session whose conversation is compacted: /history says where, with the summary."""

from __future__ import annotations

import json

from rlm.engine.conversation import SUMMARY_REQUEST
from rlm.engine.prompts import INSTRUCTIONS
from tests.cli.test_cli import model_args, run_cli


def responder(body):
    last = body["messages"][-1]["content"]
    if SUMMARY_REQUEST in last:
        return "Summary: the notes are 3000 x characters; the first query was answered with 3000."
    if last.startswith("Query: Print"):
        return "```python\nprint(context)\n```"
    return "```python\nFINAL(str(len(context)))\n```"


def test_history_shows_the_compaction_and_its_summary(openai_server, tmp_path):
    server = openai_server(responder)
    document = tmp_path / "notes.txt"
    document.write_text("x" * 3000)
    saved = tmp_path / "chat.json"
    lines = f"Print it, then how long?\nHow long again?\n/history\n/save {saved}\n"
    # Below the instructions plus the 3,000 printed characters: question 2 starts past the limit.
    limit = (len(INSTRUCTIONS) + 3000) // 3
    result = run_cli("chat", "-c", str(document), "--compact-at", str(limit), *model_args(server), stdin=lines)
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    assert out[:2] == ["3000", "3000"]
    assert "[conversation compacted before step 1: 1 turns" in out[6]
    assert "summary: Summary: the notes are 3000 x characters" in out[6]
    assert "; conversation compacted]" in result.stderr
    assert sum(SUMMARY_REQUEST in r["messages"][-1]["content"] for r in server.requests) == 1
    entries = json.loads(saved.read_text())
    assert [len(e["compactions"]) for e in entries] == [0, 1]


def test_a_compaction_limit_that_is_not_a_positive_number_is_refused(tmp_path):
    document = tmp_path / "notes.txt"
    document.write_text("x")
    result = run_cli("chat", "-c", str(document), "--compact-at", "0", "--model", "openai/m", "--api-base",
                     "http://127.0.0.1:9/v1", stdin="")  # fmt: skip
    assert result.returncode == 2 and "compact_at_tokens must be a positive integer" in result.stderr
