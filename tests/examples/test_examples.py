"""Every example runs, as a user would run it, against a local OpenAI-compatible server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from rlm.engine.prompts import INSTRUCTIONS

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NEEDS_THE_REAL_LOCAL_MODEL = {"local_model.py"}  # run by tests/integration instead
SCRIPTS = sorted(p.name for p in EXAMPLES.glob("*.py") if p.name != "common.py")


def responder(body):
    system = body["messages"][0]["content"] if body["messages"] else ""
    if INSTRUCTIONS[:60] in system:
        return "Count it.\n```python\nFINAL(str(len(context)))\n```"
    if "ticket_title" in system:
        return "[[ ## ticket_title ## ]]\nDisk full errors\n\n[[ ## completed ## ]]"
    return "a sub-model answer"


@pytest.mark.parametrize("script", [s for s in SCRIPTS if s not in NEEDS_THE_REAL_LOCAL_MODEL])
def test_example_runs_to_an_answer(script, openai_server, tmp_path):
    server = openai_server(responder)
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.update(RLM_MODEL="openai/test-model", RLM_RECURSIVE_MODEL="openai/test-sub", RLM_API_BASE=server.base_url,
               RLM_SANDBOX="restricted", LITELLM_LOCAL_MODEL_COST_MAP="True")  # fmt: skip
    result = subprocess.run([sys.executable, str(EXAMPLES / script)], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=180)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip(), "the example printed nothing"
    assert any(r["model"] == "test-model" for r in server.requests)


def test_every_listed_example_exists():
    expected = {
        "basic_usage.py", "dspy_usage.py", "openrouter_usage.py", "e2b_usage.py", "ollama_local.py",
        "two_models.py", "long_document.py", "data_extraction.py", "multi_file.py", "custom_config.py",
        "graph_tracking.py", "local_model.py", "optimize.py", "session_compaction.py",
    }  # fmt: skip
    assert expected <= set(SCRIPTS)


def test_examples_explain_a_missing_key(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and not k.startswith("RLM_")}
    result = subprocess.run([sys.executable, str(EXAMPLES / "two_models.py")], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 2
    assert "API key not found" in result.stderr and "RLM_MODEL" in result.stderr


def run_example(script: str, tmp_path: Path, **settings: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and not k.startswith("RLM_")}
    env.update(LITELLM_LOCAL_MODEL_COST_MAP="True", **settings)
    return subprocess.run([sys.executable, str(EXAMPLES / script)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=180)  # fmt: skip


@pytest.mark.parametrize("script", ["basic_usage.py", "two_models.py"])
def test_a_missing_key_suggests_the_bundled_model(script, tmp_path):
    result = run_example(script, tmp_path)
    assert result.returncode == 2
    assert "API key not found" in result.stderr and "RLM_MODEL=local" in result.stderr


def test_ollama_example_without_ollama_ends_in_one_line_not_a_traceback(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        base = f"http://127.0.0.1:{probe.getsockname()[1]}"  # bound, never listening: refused
        result = run_example("ollama_local.py", tmp_path, RLM_API_BASE=base)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"Nothing answers at {base}: run `ollama serve` and `ollama pull qwen2.5-coder:7b`" in result.stderr
