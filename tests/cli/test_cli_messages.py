"""What the `rlm` command says about itself and about wrong input: help, version, names, options."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from rlm.cli import optimize
from rlm.cli.main import build_parser
from rlm.errors import ConfigurationError
from tests.cli.test_cli import run_cli


@pytest.fixture
def doc(tmp_path):
    path = tmp_path / "doc.txt"
    path.write_text("some text")
    return str(path)


def test_python_dash_m_rlm_and_version():
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    module = subprocess.run([sys.executable, "-m", "rlm", "--version"], capture_output=True, text=True, env=env)
    assert module.returncode == 0, module.stderr
    assert re.fullmatch(r"rlm \d+\.\d+\.\d+\S*\n", module.stdout)
    assert run_cli("--version").stdout == module.stdout


@pytest.mark.parametrize("command", ["ask", "chat"])
def test_ask_and_chat_help_say_the_default_model_where_they_point(command):
    text = " ".join(run_cli(command, "--help").stdout.split())
    assert "see below" not in text
    assert (
        "Without --model: RLM_MODEL, else gpt-4o-mini when OPENAI_API_KEY is set, else the bundled local model" in text
    )


def test_every_subcommand_lists_the_same_sandboxes():
    for command in ("ask", "chat", "batch", "optimize"):
        text = " ".join(run_cli(command, "--help").stdout.split())
        assert "auto | restricted | restricted-policy-only | e2b" in text, command


def test_view_names_batch_results_in_its_help_and_its_missing_file_error(tmp_path):
    assert "batch" in run_cli("view", "--help").stdout
    missing = run_cli("view", str(tmp_path / "results.jsonl"))
    assert missing.returncode == 2
    assert "--history, --graph or `rlm batch --out`" in missing.stderr


def test_an_unknown_model_name_leaks_no_banner_and_names_the_cli_option(doc):
    result = run_cli("ask", "q", "-c", doc, "--model", "foo")
    assert result.returncode == 2
    assert "Provider List" not in result.stdout + result.stderr
    assert "\\u001b" not in result.stderr and "\x1b" not in result.stderr
    assert result.stdout == ""
    assert "pass --api-base URL" in result.stderr and "api_base=" not in result.stderr


def test_a_typo_in_a_model_name_is_said_with_the_missing_key(doc):
    result = run_cli("ask", "q", "-c", doc, "--model", "gpt-4o-minii")
    assert result.returncode == 2
    assert "set OPENAI_API_KEY" in result.stderr and "did you mean 'gpt-4o-mini'?" in result.stderr


def test_local_in_any_case_is_the_bundled_model(openai_server, doc):
    server = openai_server(lambda body: "```python\nFINAL(str(len(context)))\n```")
    result = run_cli("ask", "How long?", "-c", doc, "--model", "Local", "--api-base", server.base_url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "9"
    assert {request["model"] for request in server.requests} == {"local"}


def test_e2b_without_its_key_points_at_the_cli_sandbox_option(doc):
    result = run_cli(
        "ask", "q", "-c", doc, "--sandbox", "e2b", "--model", "openai/m", "--api-base", "http://127.0.0.1:9/v1"
    )
    assert result.returncode == 2
    assert "E2B" in result.stderr
    assert "sandbox='" not in result.stderr


def test_optimize_missing_key_names_optimize(tmp_path):
    result = run_cli("optimize", "--out", str(tmp_path / "p.json"), "--model", "gpt-4o-mini")
    assert result.returncode == 2
    assert "`rlm optimize` reads keys" in result.stderr and "`rlm ask`" not in result.stderr


def test_optimize_leaves_the_request_timeout_to_the_library(monkeypatch, tmp_path):
    seen: dict = {}

    def record(**settings):
        seen.update(settings)
        raise ConfigurationError("stop here")

    import rlm

    monkeypatch.setattr(rlm, "RLM", record)
    args = build_parser("optimize").parse_args(["optimize", "--out", str(tmp_path / "p.json"), "--model", "local"])
    assert optimize.run(args) == 2
    assert seen["model"] == "local" and "timeout" not in seen  # RLM(model="local") then waits 900 s

    seen.clear()
    args = build_parser("optimize").parse_args(["optimize", "--out", "p.json", "--model", "local", "--timeout", "60"])
    optimize.run(args)
    assert seen["timeout"] == 60.0
