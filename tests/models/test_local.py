"""The bundled model's file checks, on small synthetic inputs (the real model runs in tests/integration)."""

from __future__ import annotations

import io
import struct

import pytest

from rlm.errors import ConfigurationError
from rlm.models import local


def gguf_header(pairs: list[tuple[str, int, bytes]]) -> bytes:
    def string(text: str) -> bytes:
        raw = text.encode()
        return struct.pack("<Q", len(raw)) + raw

    body = b"GGUF" + struct.pack("<IQQ", 3, 0, len(pairs))
    for key, value_type, payload in pairs:
        body += string(key) + struct.pack("<I", value_type) + payload
    return body


def test_metadata_is_read_past_arrays_and_scalars():
    name = "Qwen2.5 Coder 1.5B Instruct"
    header = gguf_header(
        [
            ("general.architecture", 8, struct.pack("<Q", 5) + b"qwen2"),
            ("tokens", 9, struct.pack("<IQ", 8, 2) + struct.pack("<Q", 1) + b"a" + struct.pack("<Q", 1) + b"b"),
            ("qwen2.context_length", 4, struct.pack("<I", 32768)),
            ("general.name", 8, struct.pack("<Q", len(name)) + name.encode()),
        ]
    )
    found = local.read_gguf_metadata(io.BytesIO(header), ("general.name", "qwen2.context_length"))
    assert found == {"general.name": name, "qwen2.context_length": 32768}


def test_a_file_that_is_not_gguf_is_refused():
    with pytest.raises(ConfigurationError, match="not a GGUF file"):
        local.read_gguf_metadata(io.BytesIO(b"PK\x03\x04 zip"), ("general.name",))


def test_missing_parts_say_how_to_install_them(monkeypatch):
    monkeypatch.setattr(local, "PART_PACKAGE", "no_such_model_part{n}")
    with pytest.raises(ConfigurationError, match=r"part 1 of 22 is missing: install the local model with"):
        local._part_files()


def test_local_servers_are_found_through_the_environment(monkeypatch):
    monkeypatch.setenv("RLM_LOCAL_API_BASE", "http://127.0.0.1:9999/v1")
    assert local.ensure_local_server() == "http://127.0.0.1:9999/v1"


def test_model_local_uses_the_local_server_with_small_model_settings(monkeypatch):
    from rlm import RLM

    monkeypatch.setenv("RLM_LOCAL_API_BASE", "http://127.0.0.1:9999/v1")
    rlm = RLM(model="local")
    assert rlm.lm.model == "openai/local"
    assert rlm.lm.engine.dump_state()["api_base"] == "http://127.0.0.1:9999/v1"  # served natively
    assert rlm.lm.kwargs["temperature"] == 0.0 and rlm.lm.kwargs["max_tokens"] == 768
    assert rlm.config.max_output_chars == 2000 and rlm.config.sub_prompt_chars == 12_000
    # a request queued behind others on the one-slot server is not dead: a longer default, not a resend
    assert rlm.lm.engine.dump_state()["timeout"] == 900.0
    assert RLM(model="local", timeout=60).lm.engine.dump_state()["timeout"] == 60
    assert RLM(model="local", timeout=120.0).lm.engine.dump_state()["timeout"] == 120.0
    # its server answers one request at a time: more in flight would queue there, under their timeouts
    assert rlm.config.max_concurrency == 1 and RLM(model="local", max_concurrency=4).config.max_concurrency == 4


def test_the_bundled_model_retries_late_enough_for_a_restarted_server(monkeypatch):
    from rlm import RLM
    from rlm.models.retry import policy_for

    monkeypatch.setenv("RLM_LOCAL_API_BASE", "http://127.0.0.1:9999/v1")
    policy = policy_for(RLM(model="local").lm)
    slowest_start_s = 16.0  # README: a server start takes 3-16 s here
    waits = [policy.wait(ConnectionError("refused"), attempt, rng=lambda: 0.0) for attempt in range(policy.retries)]
    assert sum(waits[:-1]) < slowest_start_s <= sum(waits)  # the last attempt comes after the slowest start
    other = RLM(model="openai/gpt-4o-mini", api_key="test-key")
    assert policy_for(other.lm).base_s == 1.0  # other models keep the usual backoff


def test_local_model_steps_stop_at_the_end_of_a_code_block_and_sub_calls_do_not(monkeypatch, openai_server):
    """Through the real HTTP path: the step request carries the stop sequence, the sub-call does not."""
    from rlm import RLM

    def responder(body):
        if "Python REPL" in body["messages"][0]["content"]:
            done = any(m["role"] == "assistant" for m in body["messages"])
            return "FINAL(note)" if done else "```python\nnote = llm_query('Say hi')\nprint(note)"
        return "hi"

    server = openai_server(responder)
    monkeypatch.setenv("RLM_LOCAL_API_BASE", server.base_url)
    assert RLM(model="local").completion("Greet.", "x" * 50_000) == "hi"
    steps = [r for r in server.requests if "Python REPL" in r["messages"][0]["content"]]
    subs = [r for r in server.requests if r not in steps]
    assert [r.get("stop") for r in steps] == [["\n```\n"], ["\n```\n"]]
    assert len(subs) == 1 and "stop" not in subs[0]
