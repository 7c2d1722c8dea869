"""The public RLM API: its signature, input checks, model and key errors, outputs on failure."""

from __future__ import annotations

import inspect
import json
import sys

import pytest

from rlm import (
    RLM,
    APIKeyNotFoundError,
    ConfigurationError,
    ContextError,
    ModelNotFoundError,
    ProviderError,
    RLMResult,
    SandboxError,
)


def test_constructor_keeps_the_documented_parameter_order():
    names = list(inspect.signature(RLM).parameters)
    assert names[:13] == [
        "model", "recursive_model", "api_key", "api_base", "max_depth", "max_iterations", "temperature",
        "timeout", "sandbox", "enable_graph_tracking", "graph_output_path", "enable_history",
        "history_output_path",
    ]  # fmt: skip
    assert list(inspect.signature(RLM.completion).parameters) == ["self", "query", "context"]


def test_tree_wide_limits_are_keyword_only_settings_with_documented_defaults(make_lm):
    lm, _ = make_lm([])
    defaults = {
        "max_step_seconds": 300.0,
        "max_live_sandboxes": 16,
        "max_answer_chars": 100_000,
        "max_batch_items": 256,
    }
    parameters = inspect.signature(RLM).parameters
    assert all(parameters[name].kind is inspect.Parameter.KEYWORD_ONLY for name in defaults)
    config = RLM(model=lm).config
    assert {name: getattr(config, name) for name in defaults} == defaults
    chosen = {"max_step_seconds": 5.0, "max_live_sandboxes": 2, "max_answer_chars": 10, "max_batch_items": 3}
    config = RLM(model=lm, **chosen).config
    assert {name: getattr(config, name) for name in chosen} == chosen


@pytest.mark.parametrize("setting", [{"max_step_seconds": 0}, {"max_live_sandboxes": 0}, {"max_batch_items": -1}])
def test_limits_that_allow_nothing_are_refused(make_lm, setting):
    lm, _ = make_lm([])
    with pytest.raises(ConfigurationError, match=next(iter(setting))):
        RLM(model=lm, **setting)


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ("", "context is empty"),
        ("   \n", "context is empty"),
        ([], "no documents"),
        (b"bytes", "decode bytes"),
        (None, "must be a str"),
        ({1: "x"}, "string keys"),
        ([object()], "documents must be text"),
    ],
)
def test_bad_context_is_refused_with_a_clear_message(make_lm, context, message):
    lm, engine = make_lm([])
    with pytest.raises(ContextError, match=message):
        RLM(model=lm).completion("q", context)
    assert engine.calls == []


def test_empty_query_is_refused(make_lm):
    lm, _ = make_lm([])
    with pytest.raises(ContextError, match="query must be a non-empty string"):
        RLM(model=lm).completion("  ", "ctx")


def test_unknown_sandbox_lists_the_choices(make_lm):
    lm, _ = make_lm([])
    with pytest.raises(SandboxError, match=r"Unknown sandbox 'docker': choose one of 'auto', 'e2b', 'restricted'"):
        RLM(model=lm, sandbox="docker")


def test_rlm_sandbox_sets_the_default_and_an_explicit_name_wins(make_lm, monkeypatch):
    """The signature keeps sandbox="auto"; "auto" defers to RLM_SANDBOX, a named sandbox wins over it."""
    lm, _ = make_lm([])
    monkeypatch.setenv("RLM_SANDBOX", "nonsense")
    RLM(model=lm, sandbox="restricted-policy-only")  # explicit: the variable is not consulted
    monkeypatch.setenv("RLM_SANDBOX", "restricted-policy-only")
    lm, _ = make_lm(["```python\nFINAL(str(len(context)))\n```"])
    assert RLM(model=lm).completion("How long?", "abc") == "3"


def test_an_unknown_rlm_sandbox_is_refused_at_construction(make_lm, monkeypatch):
    lm, _ = make_lm([])
    monkeypatch.setenv("RLM_SANDBOX", "nonsense")
    with pytest.raises(SandboxError, match=r"Unknown sandbox 'nonsense' in RLM_SANDBOX: choose one of 'auto'"):
        RLM(model=lm)


def test_rlm_sandbox_e2b_without_its_sdk_is_refused_at_construction(make_lm, monkeypatch):
    lm, _ = make_lm([])
    monkeypatch.setenv("RLM_SANDBOX", "e2b")
    monkeypatch.setenv("E2B_API_KEY", "k")
    monkeypatch.setitem(sys.modules, "e2b_code_interpreter", None)  # import fails as if absent
    with pytest.raises(SandboxError, match=r"needs the E2B SDK\b.*: pip install"):
        RLM(model=lm)
    monkeypatch.delenv("E2B_API_KEY")
    monkeypatch.delitem(sys.modules, "e2b_code_interpreter")
    with pytest.raises(SandboxError, match=r"needs an E2B API key"):
        RLM(model=lm)


def test_missing_key_is_reported_before_any_request(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(APIKeyNotFoundError, match=r"^API key not found for model 'gpt-4o-mini': set OPENAI_API_KEY"):
        RLM(model="gpt-4o-mini")
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(APIKeyNotFoundError, match="ANTHROPIC_API_KEY"):
        RLM(model="claude-sonnet-4-20250514")


def test_key_from_a_dotenv_file_in_the_working_directory(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OPENROUTER_API_KEY", raising=False)
    (tmp_path / ".env").write_text("OPENROUTER_API_KEY=sk-or-test\n")
    try:
        rlm = RLM(model="openrouter/openai/gpt-4o-mini")
        assert rlm.lm.model == "openrouter/openai/gpt-4o-mini"
    finally:
        monkeypatch.delenv("OPENROUTER_API_KEY", raising=False)


def test_unknown_model_name_is_reported():
    with pytest.raises(ModelNotFoundError, match=r"^Model not found: 'no-such-model-xyz'"):
        RLM(model="no-such-model-xyz", api_key="k")


@pytest.mark.parametrize(
    ("name", "qualified"),
    [
        ("gpt-4o-mini", "openai/gpt-4o-mini"),
        ("gpt-5-mini", "openai/gpt-5-mini"),
        ("claude-sonnet-4", "anthropic/claude-sonnet-4-20250514"),
        ("claude-sonnet-4-20250514", "anthropic/claude-sonnet-4-20250514"),
        ("openrouter/meta-llama/llama-3.1-8b-instruct", "openrouter/meta-llama/llama-3.1-8b-instruct"),
        ("ollama/llama3.2", "ollama/llama3.2"),
        ("azure/my-deployment", "azure/my-deployment"),
    ],
)
def test_readme_model_names_resolve(name, qualified):
    assert RLM(model=name, api_key="sk-test").lm.model == qualified


def test_ollama_needs_no_key(monkeypatch):
    monkeypatch.delenv("OLLAMA_API_KEY", raising=False)
    assert RLM(model="ollama/llama3.2").lm.model == "ollama/llama3.2"


def test_settings_reach_the_lm():
    rlm = RLM(model="gpt-4o-mini", api_key="sk-test", temperature=0.4, timeout=12, max_tokens=99, top_p=0.9)
    kwargs = rlm.lm.kwargs
    assert (kwargs["temperature"], kwargs["timeout"], kwargs["max_tokens"], kwargs["top_p"]) == (
        0.4,
        12,
        99,
        0.9,
    )


def test_run_returns_usage_and_details(make_lm):
    lm, _ = make_lm(["```python\nx = 1\n```", "FINAL(yes)"], prompt_tokens=120, completion_tokens=30)
    result = RLM(model=lm).run("q", "ctx")
    assert isinstance(result, RLMResult)
    assert (result.answer, result.iterations, result.llm_calls, result.depth) == ("yes", 2, 2, 0)
    assert (result.prompt_tokens, result.completion_tokens) == (240, 60)
    assert result.wall_time_s > 0
    assert [s.code for s in result.trajectory] == ["x = 1", ""]
    json.dumps(result.to_dict())


def test_cost_comes_from_the_price_table_for_known_models(make_lm):
    lm, _ = make_lm(["FINAL(x)"], model="openai/gpt-4o-mini", prompt_tokens=1_000_000, completion_tokens=0)
    cost = RLM(model=lm).run("q", "ctx").cost
    assert cost is not None and 0.01 < cost < 10


def test_history_and_graph_are_written_when_a_run_fails(make_lm, tmp_path):
    lm, _ = make_lm(["```python\nx = 1\n```"])  # the second call finds no reply: a provider failure
    graph_path, history_path = tmp_path / "graph.json", tmp_path / "history.json"
    rlm = RLM(model=lm, graph_output_path=graph_path, history_output_path=history_path)
    with pytest.raises(ProviderError):
        rlm.completion("q", "ctx")
    history = json.loads(history_path.read_text())
    assert [r["error"] is None for r in history] == [True, False]
    graph = json.loads(graph_path.read_text())
    assert graph["nodes"][0]["error"].startswith("ProviderError")


def test_history_records_every_call_and_clears(make_lm):
    root, _ = make_lm(["```python\nprint(llm_query('hi'))\n```", "FINAL(x)"])
    sub, _ = make_lm(["hello"], model="scripted/sub")
    rlm = RLM(model=root, recursive_model=sub, enable_history=True)
    result = rlm.run("q", "ctx")
    history = rlm.get_history()
    assert len(history) == result.llm_calls == 3
    assert [r["model"] for r in history] == ["scripted/root", "scripted/sub", "scripted/root"]
    assert sum(r["prompt_tokens"] for r in history) == result.prompt_tokens
    rlm.clear_history()
    assert rlm.get_history() == []


def test_print_history_is_readable(make_lm, capsys):
    lm, _ = make_lm(["FINAL(x)"])
    rlm = RLM(model=lm, enable_history=True)
    rlm.completion("q", "ctx")
    rlm.print_history(detailed=True, max_length=40)
    out = capsys.readouterr().out
    assert "#1" in out and "model=scripted/root" in out and "[system]" in out and "more chars" in out


def test_graph_has_a_node_per_rlm_node_and_plain_call(make_lm):
    root, _ = make_lm(["```python\na = recursive_llm('inner', context)\nb = llm_query('x')\nFINAL(a + b)\n```"])
    sub, _ = make_lm(["```python\nFINAL('A')\n```", "B"], model="scripted/sub")
    rlm = RLM(model=root, recursive_model=sub, enable_graph_tracking=True)
    assert rlm.completion("q", "ctx") == "AB"
    graph = rlm.get_graph()
    kinds = sorted(data["kind"] for _, data in graph.nodes(data=True))
    assert kinds == ["llm", "rlm", "rlm"]
    root_id = next(n for n, d in graph.nodes(data=True) if d["depth"] == 0)
    assert graph.out_degree(root_id) == 2


def test_on_event_receives_engine_events(make_lm):
    lm, _ = make_lm(["FINAL(x)"])
    seen = []
    RLM(model=lm, on_event=lambda e: seen.append(type(e).__name__)).completion("q", "ctx")
    assert seen == ["NodeStarted", "LMCalled", "StepExecuted", "NodeFinished"]


@pytest.mark.parametrize(
    ("given", "meant"),
    [("history_path", "history_output_path"), ("graph_path", "graph_output_path"), ("maxdepth", "max_depth")],
)
def test_a_misspelled_parameter_is_warned_about_when_the_rlm_is_built_naming_the_one_meant(given, meant):
    # Unknown keywords are request settings for the model: this one would fail at the first LM call.
    with pytest.warns(UserWarning, match=rf"no parameter '{given}': did you mean {meant}="):
        RLM(model="openai/x", api_key="k", **{given: "x"})


def test_request_settings_close_to_a_parameters_name_still_reach_the_model(recwarn):
    rlm = RLM(model="openai/x", api_key="k", verbosity="low", max_retries=2, top_p=0.5, max_new_tokens=9)
    assert (rlm.lm.kwargs["verbosity"], rlm.lm.kwargs["top_p"], rlm.lm.kwargs["max_new_tokens"]) == ("low", 0.5, 9)
    assert not [w for w in recwarn if "verbosity" in str(w.message) or "max_retries" in str(w.message)]
