"""`rlm ask` and `rlm chat` when a run ends without an answer: one line on stderr, never an empty answer."""

from __future__ import annotations

import json

import pytest

from tests.cli.test_cli import run_cli


@pytest.fixture
def never_answers(openai_server):
    """A model that explores and never calls FINAL, not even when told to answer now."""
    return openai_server(lambda body: "```python\nprint(len(context))\n```")


@pytest.fixture
def empty_answer(openai_server):
    return openai_server(lambda body: '```python\nFINAL("")\n```')


def ask(server, tmp_path, *extra: str):
    (tmp_path / "doc.txt").write_text("some text")
    return run_cli("ask", "What is the code?", "-c", str(tmp_path / "doc.txt"), "--max-iterations", "2",
                   "--model", "openai/test-model", "--api-base", server.base_url, *extra)  # fmt: skip


def test_no_final_answer_exits_3_with_the_reason_and_what_to_try(never_answers, tmp_path):
    result = ask(never_answers, tmp_path)
    assert result.returncode == 3, result.stderr
    assert result.stdout == ""
    [line] = [line for line in result.stderr.splitlines() if line.startswith("rlm: no answer")]
    assert line.startswith("rlm: no answer (no_answer: the model's last reply gave no FINAL answer); try ")
    assert "--max-iterations" in line and "--model" in line


def test_an_empty_answer_is_no_answer(empty_answer, tmp_path):
    result = ask(empty_answer, tmp_path)
    assert result.returncode == 3, result.stderr
    assert result.stdout == ""
    assert "rlm: no answer (" in result.stderr


def test_json_still_prints_the_record_and_exits_3(never_answers, tmp_path):
    result = ask(never_answers, tmp_path, "--json")
    assert result.returncode == 3, result.stderr
    record = json.loads(result.stdout)
    assert record["finish_reason"] == "no_answer" and record["answer"] == ""


def test_typed_output_without_an_answer_exits_3_with_nothing_on_stdout(never_answers, tmp_path):
    result = ask(never_answers, tmp_path, "--output", "int")
    assert result.returncode == 3, result.stderr
    assert result.stdout == ""
    assert "rlm: no answer (no_answer:" in result.stderr


def test_chat_says_so_per_question_and_goes_on(never_answers, tmp_path):
    (tmp_path / "doc.txt").write_text("some text")
    result = run_cli("chat", "-c", str(tmp_path / "doc.txt"), "--max-iterations", "2", "--model", "openai/test-model",
                     "--api-base", never_answers.base_url, stdin="first?\nsecond?\n")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
    assert result.stderr.count("rlm: no answer (no_answer:") == 2


@pytest.fixture
def repeats_itself(openai_server):
    """A model that runs the same code every step and answers with a guess when told to answer now."""

    def reply(body: dict) -> str:
        told_to_finish = "You keep running the same code." in body["messages"][-1]["content"]
        return '```python\nFINAL("4242")\n```' if told_to_finish else "```python\nprint(len(context))\n```"

    return openai_server(reply)


def test_a_run_stopped_for_repeating_itself_says_so_and_not_to_take_more_steps(repeats_itself, tmp_path):
    (tmp_path / "doc.txt").write_text("some text\n" * 2000)  # past the task message's quote, so guesses count
    result = run_cli("ask", "What is the code?", "-c", str(tmp_path / "doc.txt"), "--max-iterations", "20",
                     "--model", "openai/test-model", "--api-base", repeats_itself.base_url)  # fmt: skip
    assert result.returncode == 3, result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.startswith("rlm: no answer")]
    assert "ran the same code again and again and was stopped at step" in line and "of 20)" in line, line
    assert "--max-iterations" not in line and "rephrase the question" in line


def test_the_summary_line_says_how_a_run_that_answered_ended():
    # "[repeated; ...]" after a right answer read as a failure to a newcomer
    from types import SimpleNamespace

    from rlm.cli.common import finish_label

    assert finish_label(SimpleNamespace(finish_reason="repeated", answer="42")) == "answered after repeating its code"
    assert finish_label(SimpleNamespace(finish_reason="max_iterations", answer="42")) == "answered at the step limit"
    assert finish_label(SimpleNamespace(finish_reason="final", answer="42")) == "final"
    assert finish_label(SimpleNamespace(finish_reason="unfounded", answer="")) == "unfounded"
