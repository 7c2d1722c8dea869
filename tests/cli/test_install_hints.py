"""Install hints name the way the package is installed today: from a clone (it is not on PyPI)."""

from __future__ import annotations

import importlib.util
import logging
import re
import socket
from pathlib import Path

import pytest

from rlm.errors import ConfigurationError
from rlm.install_check import install_hint
from rlm.models import local_server

ROOT = Path(__file__).resolve().parents[2]


def test_no_hint_names_the_unpublished_distribution_with_an_extra():
    texts = [ROOT / "README.md", *(ROOT / "src").rglob("*.py"), *(ROOT / "docs").rglob("*.md"),
             *(ROOT / "examples").rglob("*.py")]  # fmt: skip
    offenders = [str(path.relative_to(ROOT)) for path in texts if "recursive-llm-dspy[" in path.read_text()]
    assert offenders == []


def test_the_hint_is_the_clone_form():
    assert install_hint("ray") == 'pip install -e ".[ray]" run in your clone of recursive-llm (it is not on PyPI yet)'
    assert install_hint("local", force_reinstall=True).startswith('pip install --force-reinstall -e ".[local]"')


def test_a_missing_local_extra_is_said_before_any_start_is_announced(monkeypatch, tmp_path, caplog):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("RLM_LOCAL_PORT", str(port))
    monkeypatch.setenv("RLM_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("RLM_LOCAL_API_BASE", raising=False)
    monkeypatch.setattr(local_server, "_managed", None)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "llama_cpp" else real_find_spec(name, *a)
    )

    with caplog.at_level(logging.WARNING), pytest.raises(ConfigurationError) as raised:
        local_server.ensure_local_server()

    assert "llama-cpp-python's server is not installed" in str(raised.value)
    assert 'pip install -e ".[local]" run in your clone' in str(raised.value)
    assert not re.search("starting the local model server", caplog.text)
