"""The real path RLM -> dspy.LM -> HTTP, against an OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import pytest

from rlm import RLM, ModelNotFoundError
from rlm.engine.prompts import INSTRUCTIONS


def is_root_request(body):
    return any(INSTRUCTIONS[:60] in (m.get("content") or "") for m in body["messages"])


def scripted_server(openai_server):
    root_script = iter(
        [
            "```python\nparts = llm_query_batched([context[:5], context[5:]])\nprint(parts)\n```",
            "FINAL(both halves read)",
        ]
    )

    def responder(body):
        return next(root_script) if is_root_request(body) else f"summary of {body['messages'][-1]['content']}"

    return openai_server(responder)


@pytest.mark.parametrize("engine", ["auto", "litellm"])
def test_root_requests_use_model_and_sub_requests_use_recursive_model(openai_server, engine):
    server = scripted_server(openai_server)
    rlm = RLM(
        model="openai/root-model",
        recursive_model="openai/sub-model",
        api_base=server.base_url,
        temperature=0.2,
        engine=engine,
    )
    result = rlm.run("Summarise", "helloworld")
    assert result.answer == "both halves read"
    roots = [r for r in server.requests if is_root_request(r)]
    subs = [r for r in server.requests if not is_root_request(r)]
    assert {r["model"] for r in roots} == {"root-model"} and len(roots) == 2
    assert {r["model"] for r in subs} == {"sub-model"} and len(subs) == 2
    assert sorted(r["messages"][-1]["content"] for r in subs) == ["hello", "world"]
    assert result.usage["openai/root-model"].prompt_tokens == 100  # what the server reported
    assert result.usage["openai/sub-model"].calls == 2


@pytest.mark.parametrize("engine", ["auto", "litellm"])
def test_local_servers_receive_a_max_tokens_limit_they_honour(openai_server, engine):
    server = openai_server(lambda body: "FINAL(ok)")
    RLM(model="openai/local", api_base=server.base_url, engine=engine).completion("q", "ctx")
    RLM(model="openai/local", api_base=server.base_url, max_tokens=300, engine=engine).completion("q", "ctx")
    assert [r.get("max_tokens") for r in server.requests] == [2048, 300]


def test_temperature_and_extra_kwargs_reach_the_server(openai_server):
    server = openai_server(lambda body: "FINAL(ok)")
    RLM(model="openai/local", api_base=server.base_url, temperature=0.3, top_p=0.5, seed=7).completion("q", "c")
    body = server.requests[0]
    assert (body["temperature"], body["top_p"], body["seed"]) == (0.3, 0.5, 7)


def test_a_providers_not_found_answer_becomes_model_not_found(openai_server):
    server = openai_server(lambda body: "FINAL(ok)", unknown_models={"ghost"})
    rlm = RLM(model="openai/ghost", api_base=server.base_url, num_retries=0)
    with pytest.raises(ModelNotFoundError, match=r"^Model not found: 'openai/ghost'"):
        rlm.completion("q", "ctx")


def test_a_bare_model_name_with_api_base_is_served_as_openai_compatible(openai_server):
    server = openai_server(lambda body: "FINAL(ok)")
    assert RLM(model="my-local-model", api_base=server.base_url).completion("q", "ctx") == "ok"
    assert server.requests[0]["model"] == "my-local-model"
