"""Model names a person types: the bundled model in any case, typos said before a key is set, no banner."""

from __future__ import annotations

import pytest

from rlm.errors import APIKeyNotFoundError, ModelNotFoundError
from rlm.models.resolve import build_lm, is_local_model


@pytest.fixture(autouse=True)
def no_keys(monkeypatch):
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("name", ["local", "Local", " LOCAL "])
def test_the_bundled_model_is_named_in_any_case(name):
    assert is_local_model(name)


def test_other_names_are_not_the_bundled_model():
    assert not is_local_model("openai/local") and not is_local_model("locale") and not is_local_model(None)


def test_local_in_another_case_reaches_the_local_server_settings(openai_server):
    server = openai_server(lambda body: "hi")
    lm = build_lm("Local", api_base=server.base_url)
    assert lm.model == "openai/local"


@pytest.mark.parametrize(("model", "suggestion"), [("gpt-4o-minii", "'gpt-4o-mini'"), ("openai/foo", None)])
def test_a_name_unknown_to_litellm_is_said_next_to_the_missing_key(model, suggestion):
    with pytest.raises(APIKeyNotFoundError) as raised:
        build_lm(model)
    message = str(raised.value)
    assert "set OPENAI_API_KEY" in message
    assert "LiteLLM's model table has no" in message
    if suggestion:
        assert f"did you mean {suggestion}?" in message


@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude-sonnet-4"])
def test_a_known_name_gets_the_key_message_alone(model):
    with pytest.raises(APIKeyNotFoundError) as raised:
        build_lm(model)
    assert "model table" not in str(raised.value)


def test_an_unknown_bare_name_prints_no_litellm_banner(capsys):
    with pytest.raises(ModelNotFoundError) as raised:
        build_lm("foo")
    captured = capsys.readouterr()
    assert "Provider List" not in captured.out + captured.err
    assert "'foo' is not a model name LiteLLM knows" in str(raised.value)


def test_a_misspelt_local_is_pointed_at_local():
    with pytest.raises(ModelNotFoundError) as raised:
        build_lm("lcoal")
    assert "Did you mean 'local'" in str(raised.value)
