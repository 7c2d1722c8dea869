"""Provider errors that quote a key never reach the history, the graph or the events in clear."""

from __future__ import annotations

import json

import pytest

from rlm import RLM, LMCalled
from rlm.tracking.redact import redact


def test_a_key_quoted_in_a_provider_error_is_redacted_in_events_and_history(make_lm, monkeypatch, tmp_path):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret-123456")

    def failing(messages):
        raise RuntimeError("Incorrect API key provided: sk-test-secret-123456")

    lm, _ = make_lm(failing)
    events: list[object] = []
    history = tmp_path / "history.json"
    with pytest.raises(Exception, match="Incorrect API key"):
        RLM(model=lm, on_event=events.append, history_output_path=history).run("q", "ctx")
    (call,) = [e for e in events if isinstance(e, LMCalled)]
    assert call.error is not None and "sk-test-secret-123456" not in call.error and "[redacted]" in call.error
    assert "sk-test-secret-123456" not in history.read_text()
    assert json.loads(history.read_text())


def test_redact_replaces_each_given_secret_and_leaves_other_text():
    assert redact("ab is fine", ["ab"]) == "[redacted] is fine"
    assert redact("nothing here") == "nothing here"
