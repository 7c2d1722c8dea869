"""The E2B adapter, against a faithful fake of the SDK (the E2B service is unreachable here)."""

from __future__ import annotations

import logging

import pytest

from rlm import RLM, SandboxError
from rlm.sandbox import registry
from rlm.sandbox.base import SandboxLimits
from rlm.sandbox.e2b_sandbox import E2BSandbox
from tests.conftest import last_user_message
from tests.sandbox.fake_e2b import FakeSandbox


@pytest.fixture
def make_box(tmp_path):
    FakeSandbox.created.clear()

    def make(limits: SandboxLimits | None = None) -> E2BSandbox:
        return E2BSandbox(limits, api_key="e2b-test", workdir=str(tmp_path / "rlm"), sdk=FakeSandbox)

    return make


def echo(fn, args, kwargs):
    return f"{fn}:{args}"


def test_context_is_uploaded_once_as_a_file_and_state_persists(make_box):
    box = make_box()
    box.start()
    box.load("alpha beta gamma")
    assert box.execute("words = context.split()", echo).error is None
    assert box.execute("len(words)", echo).output == "3\n"
    fake = FakeSandbox.created[0]
    assert [p.rsplit("/", 1)[-1] for p in fake.writes] == ["context.txt"]
    assert fake.api_key == "e2b-test"
    box.close()
    assert fake.killed


def test_json_context_arrives_as_data(make_box):
    box = make_box()
    box.load({"a.txt": "alpha"})
    assert box.execute("sorted(context)", echo).output == "['a.txt']\n"
    box.close()


def test_subcalls_are_bridged_to_the_host(make_box):
    box = make_box()
    box.load("ctx")
    result = box.execute("print(llm_query('hi'))\nprint(llm_query_batched(['a', 'b']))", echo)
    assert result.output == "llm_query:['hi']\nllm_query_batched:[['a', 'b']]\n"
    box.close()


def test_host_failures_become_subcall_errors(make_box):
    def failing(fn, args, kwargs):
        raise RuntimeError("provider down")

    box = make_box()
    box.load("ctx")
    code = "try:\n    llm_query('x')\nexcept SubcallError as e:\n    print('caught', e)"
    assert box.execute(code, failing).output == "caught RuntimeError: provider down\n"
    box.close()


def test_final_and_final_var(make_box):
    box = make_box()
    box.load("ctx")
    assert box.execute("FINAL('done')", echo).final_answer == "done"
    assert box.execute("n = 42\nFINAL_VAR('n')", echo).final_answer == "42"
    missing = box.execute("FINAL_VAR('nope')", echo)
    assert missing.final_answer is None and "no variable named 'nope'" in missing.error
    box.close()


def test_errors_are_reported_as_text(make_box):
    box = make_box()
    box.load("ctx")
    assert box.execute("1 / 0", echo).error.startswith("ZeroDivisionError")
    box.close()


def test_timeout_restarts_the_sandbox_with_the_context(make_box, monkeypatch):
    monkeypatch.setattr("rlm.sandbox.e2b_sandbox.SUBCALL_ALLOWANCE_S", 0.0)
    box = make_box(SandboxLimits(exec_timeout=0.3))
    box.load("still here")
    result = box.execute("import time\ntime.sleep(3)", echo)
    assert result.restarted and "TimeoutError" in result.error
    assert len(FakeSandbox.created) == 2 and FakeSandbox.created[0].killed
    assert box.execute("context", echo).output == "'still here'\n"
    box.close()


def test_a_full_run_uses_one_e2b_sandbox_per_node_and_closes_them(make_lm, make_box, monkeypatch):
    from rlm import RLMConfig, RLMModule

    root, root_engine = make_lm(["```python\nprint(recursive_llm('inner', context[:3]))\n```", "FINAL(done)"])
    sub, _ = make_lm(["```python\nFINAL(context.upper())\n```"], model="scripted/sub")
    module = RLMModule(RLMConfig(max_depth=2), root, sub, sandbox_factory=lambda limits: make_box(limits))
    assert module(query="q", context="abcdef").answer == "done"
    assert "ABC" in last_user_message(root_engine.calls[1])
    assert len(FakeSandbox.created) == 2 and all(box.killed for box in FakeSandbox.created)


def test_explicit_e2b_without_key_is_a_clear_error(monkeypatch, make_lm):
    monkeypatch.delenv("E2B_API_KEY", raising=False)
    lm, _ = make_lm([])
    with pytest.raises(SandboxError, match="set E2B_API_KEY"):
        RLM(model=lm, sandbox="e2b")


def test_explicit_e2b_without_the_sdk_is_a_clear_error(monkeypatch, make_lm):
    import builtins

    real_import = builtins.__import__

    def no_e2b(name, *args, **kwargs):
        if name.startswith("e2b_code_interpreter"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setenv("E2B_API_KEY", "k")
    monkeypatch.setattr(builtins, "__import__", no_e2b)
    lm, _ = make_lm([])
    with pytest.raises(SandboxError, match=r"pip install 'recursive-llm\[e2b\]'"):
        RLM(model=lm, sandbox="e2b")


def test_auto_picks_e2b_when_configured_and_restricted_otherwise(monkeypatch):
    monkeypatch.delenv("RLM_SANDBOX", raising=False)
    monkeypatch.delenv("E2B_API_KEY", raising=False)
    assert registry.resolve_sandbox_name("auto") == "restricted"
    monkeypatch.setenv("E2B_API_KEY", "k")
    assert registry.resolve_sandbox_name("auto") == "e2b"
    monkeypatch.setenv("RLM_SANDBOX", "restricted")
    assert registry.resolve_sandbox_name(None) == "restricted"
    assert registry.resolve_sandbox_name("local") == "restricted"


def test_auto_falls_back_with_a_warning_when_the_sdk_is_missing(monkeypatch, caplog):
    def missing():
        raise SandboxError("the E2B SDK is not installed")

    monkeypatch.setenv("E2B_API_KEY", "k")
    monkeypatch.setitem(registry._CHECKS, "e2b", missing)
    registry._warned.clear()
    with caplog.at_level(logging.WARNING):
        assert registry.resolve_sandbox_name("auto") == "restricted"
    assert "using the local restricted sandbox" in caplog.text
