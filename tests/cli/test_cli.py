"""The `rlm` console script, run as a subprocess against a local OpenAI-compatible server."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

RLM_SCRIPT = Path(sys.executable).with_name("rlm")


def run_cli(
    *args: str, stdin: str | None = None, env_extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and k != "RLM_MODEL"}
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    env.update(env_extra or {})
    return subprocess.run([str(RLM_SCRIPT), *args], input=stdin, capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture
def server(openai_server):
    def responder(body):
        last = body["messages"][-1]["content"]
        if "dict of" in last:
            return "```python\nFINAL(str(sorted(context)))\n```"
        return "```python\nFINAL(str(len(context)))\n```"

    return openai_server(responder)


def model_args(server) -> list[str]:
    return ["--model", "openai/test-model", "--api-base", server.base_url]


def test_help_lists_the_commands():
    result = run_cli("--help")
    assert result.returncode == 0
    assert "ask" in result.stdout and "serve-local" in result.stdout
    ask_help = run_cli("ask", "--help").stdout
    for flag in ("--context", "--model", "--recursive-model", "--api-base", "--sandbox", "--max-depth",
                 "--max-iterations", "--graph", "--history", "--json", "--verbose"):  # fmt: skip
        assert flag in ask_help


def test_ask_about_a_file_prints_the_answer(server, tmp_path):
    document = tmp_path / "notes.txt"
    document.write_text("x" * 1234)
    result = run_cli("ask", "How long?", "--context", str(document), *model_args(server))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1234"


def test_a_folder_becomes_a_multi_document_context(server, tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.md").write_text("alpha")
    (folder / "b.md").write_text("beta")
    (folder / "image.bin").write_bytes(b"\0\1\2")
    result = run_cli("ask", "Which files?", "--context", str(folder), *model_args(server))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['docs/a.md', 'docs/b.md']"


def test_stdin_context_and_json_output(server):
    result = run_cli("ask", "How long?", "--context", "-", "--json", *model_args(server), stdin="hello")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["answer"] == "5" and payload["llm_calls"] == 1 and payload["finish_reason"] == "final"


def test_graph_history_and_progress(server, tmp_path):
    document = tmp_path / "d.txt"
    document.write_text("abc")
    graph, history = tmp_path / "g.html", tmp_path / "h.json"
    result = run_cli("ask", "q", "-c", str(document), "--graph", str(graph), "--history", str(history), "-v",
                     *model_args(server))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert graph.read_text().startswith("<!DOCTYPE html>")
    assert len(json.loads(history.read_text())) == 1
    assert "▶ n" in result.stderr and "LM calls" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ask", "q", "--context", "/no/such/file.txt"], "Context file not found: /no/such/file.txt"),
        (["ask", "q", "--context", "EMPTY"], "empty.txt is empty (or only whitespace): there is nothing to ask about"),
        (["ask", "q", "--context", "DOC", "--sandbox", "docker"], "Unknown sandbox 'docker'"),
        (["ask", "q", "--context", "DOC", "--model", "no-such-model-xyz"], "Model not found"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(server, tmp_path, args, message):
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "doc.txt").write_text("text")
    args = [a.replace("EMPTY", str(tmp_path / "empty.txt")).replace("DOC", str(tmp_path / "doc.txt")) for a in args]
    if "--model" not in args:
        args += model_args(server)
    result = run_cli(*args)
    assert result.returncode == 2
    assert message in result.stderr


def test_missing_key_exits_2_naming_the_variable(tmp_path):
    (tmp_path / "doc.txt").write_text("text")
    result = run_cli("ask", "q", "--context", str(tmp_path / "doc.txt"), "--model", "gpt-4o-mini")
    assert result.returncode == 2
    assert "API key not found for model 'gpt-4o-mini': set OPENAI_API_KEY" in result.stderr


def test_provider_failure_exits_1(openai_server, tmp_path):
    server = openai_server(lambda body: "FINAL(x)", unknown_models=set())
    server.stop()  # nothing listens any more: a connection failure after retries
    (tmp_path / "doc.txt").write_text("text")
    result = run_cli("ask", "q", "-c", str(tmp_path / "doc.txt"), "--model", "openai/m", "--api-base", server.base_url)
    assert result.returncode == 1
    assert "ProviderError" in result.stderr


@pytest.mark.parametrize("graph_name", ["g.json", "g.graphml"])
def test_view_reads_back_a_saved_history_and_graph(server, tmp_path, graph_name):
    document = tmp_path / "d.txt"
    document.write_text("abcdef")
    graph, history = tmp_path / graph_name, tmp_path / "h.json"
    ran = run_cli("ask", "How long?", "-c", str(document), "--graph", str(graph), "--history", str(history),
                  *model_args(server))  # fmt: skip
    assert ran.returncode == 0, ran.stderr

    shown = run_cli("view", str(history), "--detailed")
    assert shown.returncode == 0, shown.stderr
    assert "node=n0" in shown.stdout and "How long?" in shown.stdout and "1 LM calls" in shown.stdout

    page = tmp_path / "view.html"
    tree = run_cli("view", str(graph), "--html", str(page))
    assert tree.returncode == 0, tree.stderr
    assert "n0 [final] openai/test-model: 1 steps, 1 LM calls" in tree.stdout
    assert "Q: How long?" in tree.stdout and "A: 6" in tree.stdout
    assert page.read_text().startswith("<!DOCTYPE html>")


def test_view_explains_files_it_cannot_show(tmp_path):
    (tmp_path / "page.html").write_text("<html></html>")
    (tmp_path / "notes.json").write_text('{"a": 1}')
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "broken.graphml").write_text("<graphml><graph>\x01</graph></graphml>")
    cases = {
        str(tmp_path / "missing.json"): "no such file",
        str(tmp_path / "page.html"): "already a view: open it in a browser",
        str(tmp_path / "notes.json"): "neither a history",
        str(tmp_path / "broken.json"): "is not JSON",
        str(tmp_path / "broken.graphml"): "is not readable GraphML",
    }
    for path, message in cases.items():
        result = run_cli("view", path)
        assert result.returncode == 2 and message in result.stderr, (path, result.stderr)


def test_bench_scores_each_method_on_the_same_items(openai_server, tmp_path):
    """The harness's plumbing (items, methods, scoring, JSON) against a local server; no model quality here."""

    def responder(body):
        system = body["messages"][0]["content"]
        if "Python REPL" in system:  # an RLM step: code that finds the needle
            return "```python\nimport re\nFINAL(re.search(r'magic number is (\\d+)', context).group(1))\n```"
        return "I could not find it."  # the direct baseline

    server = openai_server(responder)
    report = tmp_path / "bench.json"
    result = run_cli("bench", "--task", "needle", "--size", "2000", "--items", "2", "--methods", "rlm,direct",
                     "--model", "openai/test-model", "--api-base", server.base_url, "--json", str(report))  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = {row["method"]: row for row in json.loads(report.read_text())["summary"]}
    assert (summary["rlm"]["correct"], summary["rlm"]["items"], summary["rlm"]["final_by_model"]) == (2, 2, 2)
    assert (summary["direct"]["correct"], summary["direct"]["llm_calls"]) == (0, 2)
    assert "task=needle size=2000 items=2" in result.stdout
    outcomes = json.loads(report.read_text())["outcomes"]
    assert all(o["note"] == "whole context" for o in outcomes if o["method"] == "direct")


def test_bench_rejects_unknown_methods_and_sizes():
    assert "unknown method(s) magic" in run_cli("bench", "--task", "needle", "--methods", "rlm,magic").stderr
    result = run_cli("bench", "--task", "needle", "--size", "huge")
    assert result.returncode == 2 and "unknown size 'huge'" in result.stderr


def test_bench_direct_baseline_cuts_its_text_until_the_server_accepts_it(openai_server, tmp_path):
    server = openai_server(lambda body: "10", window_chars=20_000)
    report = tmp_path / "bench.json"
    result = run_cli("bench", "--task", "counting", "--size", "8k", "--items", "1", "--methods", "direct",
                     "--window", "8000", "--model", "openai/test-model", "--api-base", server.base_url,
                     "--json", str(report))  # fmt: skip
    assert result.returncode == 0, result.stderr
    (outcome,) = json.loads(report.read_text())["outcomes"]
    assert outcome["note"].startswith("truncated to ") and "error" not in outcome["note"]
    assert int(outcome["note"].split()[2].replace(",", "")) <= 20_000
    assert len(server.requests) > 1  # the first, longer prompt was refused


def test_ctrl_c_during_ask_exits_130_with_one_line_and_the_finished_steps(openai_server, tmp_path):
    def responder(body):
        if not any(m["role"] == "assistant" for m in body["messages"]):
            return "```python\nx = 1\n```"  # step 1 finishes at once
        time.sleep(30)  # step 2's call is still waiting when Ctrl-C comes
        return "FINAL(x)"

    server = openai_server(responder)
    (tmp_path / "doc.txt").write_text("text")
    history = tmp_path / "h.json"
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    # SIGINT at its default, as from a terminal: under a shell's background job (how a CI may run
    # the tests) it is inherited ignored, and the child would never see Ctrl-C
    asking = subprocess.Popen(
        [str(RLM_SCRIPT), "ask", "q", "-c", str(tmp_path / "doc.txt"), *model_args(server), "--history", str(history)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while len(server.requests) < 2:
        assert time.monotonic() < deadline and asking.poll() is None
        time.sleep(0.05)
    asking.send_signal(signal.SIGINT)
    _, err = asking.communicate(timeout=30)
    assert asking.returncode == 130
    assert err.strip() == f"rlm: interrupted after 1 finished steps; wrote {history}", err
    assert len(json.loads(history.read_text())) >= 1


def test_view_into_a_closed_pipe_ends_quietly(server, tmp_path):
    (tmp_path / "doc.txt").write_text("text")
    history = tmp_path / "h.json"
    assert (
        run_cli("ask", "q", "-c", str(tmp_path / "doc.txt"), "--history", str(history), *model_args(server)).returncode
        == 0
    )
    history.write_text(json.dumps(json.loads(history.read_text()) * 3000))  # far more than a pipe's buffer
    shell = subprocess.run(f"'{RLM_SCRIPT}' view '{history}' | head -n 1", shell=True, capture_output=True, text=True)
    assert len(shell.stdout.splitlines()) == 1
    assert "Traceback" not in shell.stderr and "BrokenPipe" not in shell.stderr, shell.stderr


def test_missing_key_message_names_the_command_lines_way_not_api_key(tmp_path):
    (tmp_path / "doc.txt").write_text("text")
    result = run_cli("ask", "q", "--context", str(tmp_path / "doc.txt"), "--model", "gpt-4o-mini")
    assert "api_key=" not in result.stderr
    assert "reads keys from the environment and from a .env file" in result.stderr


def test_a_connection_failure_names_the_address_it_tried(tmp_path):
    (tmp_path / "doc.txt").write_text("text")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, never listening: connections are refused
        result = run_cli("ask", "q", "-c", str(tmp_path / "doc.txt"), "-m", "openai/m",
                         "--api-base", f"http://127.0.0.1:{port}/v1")  # fmt: skip
    assert result.returncode == 1
    assert f"127.0.0.1:{port}" in result.stderr


@pytest.fixture
def project(tmp_path):
    """A folder like a checkout: hidden and ignored paths beside the files a question is about."""
    root = tmp_path / "proj"
    for name, text in {
        ".git/config": "[core]", ".env": "SECRET=1", ".gitignore": "build/\n*.log\n!keep.log\n",
        "src/app.py": "print('app')", "src/docs/guide.md": "# guide", "src/docs/.gitignore": "draft.md\n",
        "src/docs/draft.md": "draft", "build/out.py": "x", "run.log": "log", "keep.log": "kept",
        "node_modules/dep.js": "js",
    }.items():  # fmt: skip
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_a_folder_leaves_out_hidden_and_ignored_paths_and_says_what_it_loaded(server, project):
    result = run_cli("ask", "Which files?", "--context", str(project), *model_args(server))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['proj/keep.log', 'proj/src/app.py', 'proj/src/docs/guide.md']"
    assert "rlm: loaded 3 files, 23 bytes (left out: 4 hidden, 4 ignored)" in result.stderr


def test_include_and_exclude_globs_narrow_a_folder(server, project):
    only_python = run_cli("ask", "Which files?", "-c", str(project), "--include", "*.py", *model_args(server))
    assert only_python.stdout.strip() == "['proj/src/app.py']", only_python.stderr
    no_docs = run_cli("ask", "Which files?", "-c", str(project), "--exclude", "src/docs/", "--exclude", "*.log",
                      *model_args(server))  # fmt: skip
    assert no_docs.stdout.strip() == "['proj/src/app.py']", no_docs.stderr


def test_a_folder_past_the_size_cap_is_refused_with_what_to_do(server, project):
    result = run_cli("ask", "q", "-c", str(project), "--max-bytes", "10", *model_args(server))
    assert result.returncode == 2
    assert "passes the 10-byte cap" in result.stderr and "--include/--exclude" in result.stderr


def test_chat_answers_line_by_line_with_commands_and_one_load(server, tmp_path):
    document = tmp_path / "notes.txt"
    document.write_text("x" * 42)
    saved = tmp_path / "chat.json"
    lines = f"How long?\n/history\n/save {saved}\n/nonsense\n/reset\nAnd now?\n/quit\nnever asked\n"
    result = run_cli("chat", "--context", str(document), *model_args(server), stdin=lines)
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    assert out[0] == "42" and out[1] == "1. How long?" and out[2] == "   -> 42" and out[3] == "42"
    assert "unknown command /nonsense" in result.stderr and "[final; 1 steps;" in result.stderr
    assert [entry["question"] for entry in json.loads(saved.read_text())] == ["How long?"]
    assert "never asked" not in str(server.requests)
    shown = run_cli("view", str(saved), "--detailed")  # the transcript /save wrote reads back
    assert shown.returncode == 0, shown.stderr
    question, answer, ended, step = shown.stdout.splitlines()[:4]
    assert (question, answer) == ("1. Q: How long?", "   A: 42")
    assert ended.startswith("   [final; 1 steps; 1 LM calls; cost ") and step == "   step 1: FINAL(str(len(context)))"
    html = run_cli("view", str(saved), "--html", str(tmp_path / "chat.html"))
    assert html.returncode == 2 and "this file is a chat transcript (/save)" in html.stderr


def test_ask_with_a_typed_output_prints_the_validated_value(server, tmp_path):
    document = tmp_path / "notes.txt"
    document.write_text("x" * 7)
    result = run_cli("ask", "How long?", "--context", str(document), "--output", "int", *model_args(server))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "7"
    refused = run_cli("ask", "q", "--context", str(document), "--output", "__import__('os')", *model_args(server))
    assert refused.returncode == 2 and "--output" in refused.stderr


def test_chat_with_undecodable_input_answers_and_saves_it(server, tmp_path):
    # In UTF-8 mode stdin reads with surrogateescape: a stray byte is a lone surrogate in the question.
    # The question is answered (the run takes it UTF-8-safe) and /save writes it whole, as "?".
    document = tmp_path / "notes.txt"
    document.write_text("x" * 42)
    saved = tmp_path / "chat.json"
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and k != "RLM_MODEL"}
    env.update({"LITELLM_LOCAL_MODEL_COST_MAP": "True", "PYTHONUTF8": "1"})
    lines = b"How long \xff?\nAnd now?\n/save " + str(saved).encode() + b"\n/quit\n"
    args = [str(RLM_SCRIPT), "chat", "--context", str(document), *model_args(server)]
    result = subprocess.run(args, input=lines, capture_output=True, env=env, timeout=120)
    assert result.returncode == 0 and b"Traceback" not in result.stderr, result.stderr[-500:]
    assert result.stdout.decode().splitlines()[:2] == ["42", "42"]
    assert [entry["question"] for entry in json.loads(saved.read_text(encoding="utf-8"))] == ["How long ??", "And now?"]
