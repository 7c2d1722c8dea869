"""The CLI's default model is chosen after ./.env is read, as RLM(...) reads it."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.cli.test_cli import RLM_SCRIPT


@pytest.fixture
def server(openai_server):
    return openai_server(lambda body: "```python\nFINAL(str(len(context)))\n```")


def ask_in(folder, server, shell_key: str | None = None) -> subprocess.CompletedProcess:
    (folder / "doc.txt").write_text("abc")
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and k != "RLM_MODEL"}
    if shell_key:
        env["OPENAI_API_KEY"] = shell_key
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    return subprocess.run([str(RLM_SCRIPT), "ask", "How long?", "-c", "doc.txt", "--api-base", server.base_url],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip


def test_a_key_kept_in_dotenv_picks_gpt_4o_mini_not_the_local_model(server, tmp_path):
    (tmp_path / ".env").write_text("OPENAI_API_KEY=sk-test\n")
    result = ask_in(tmp_path, server)
    assert result.returncode == 0, result.stderr
    assert "starting the local model server" not in result.stderr
    assert {request["model"] for request in server.requests} == {"gpt-4o-mini"}
    assert result.stdout.strip() == "3"
    # The .env may have come with the folder being read: whose account gets the documents is said.
    assert "sets OPENAI_API_KEY" in result.stderr and "--model local" in result.stderr


def test_a_key_from_the_shell_picks_gpt_4o_mini_without_the_dotenv_line(server, tmp_path):
    result = ask_in(tmp_path, server, shell_key="sk-shell")
    assert result.returncode == 0, result.stderr
    assert {request["model"] for request in server.requests} == {"gpt-4o-mini"}
    assert "sets OPENAI_API_KEY" not in result.stderr


def test_rlm_model_in_dotenv_is_named_and_not_used(server, tmp_path):
    # A .env may come with the folder being read: a planted model beside a planted key would send the
    # documents to a stranger's account (attack round 20). Keys only; the model comes from the shell.
    (tmp_path / ".env").write_text("RLM_MODEL=openai/model-from-dotenv\n")
    result = ask_in(tmp_path, server)
    assert "RLM_MODEL" in result.stderr and "environment only" in result.stderr
    assert "model-from-dotenv" not in {request["model"] for request in server.requests}
