"""Prompt caching: what step calls ask providers for, and cached tokens reported back per model."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from typing import Any

import dspy
import pytest
from bench.prefix_cache import PrefixCacheServer, is_root
from dspy.lm15 import CacheConfig

from rlm import RLM
from rlm.engine.calls import estimate_cost
from rlm.errors import RLMError
from rlm.models.prompt_cache import llama_server_cache_args, step_cache
from rlm.models.resolve import build_lm

PAGE = "record {i}: value={v} label=L{l}\n"
CONTEXT = "".join(PAGE.format(i=i, v=i * 7 % 13, l=i % 6) for i in range(3000))


def three_steps(body: dict[str, Any]) -> str:
    """Root: two steps of reading (one with a sub-call), then FINAL; sub-calls answer a word."""
    if not is_root(body):
        return "noted"
    done = sum(m["role"] == "assistant" for m in body["messages"])
    if done == 0:
        return "```python\nprint(context[:3000])\n```"
    if done == 1:
        return "```python\nnote = llm_query('Summarize: ' + context[:100])\nprint(note)\n```"
    return "```python\nFINAL(note)\n```"


@pytest.fixture
def caching_server():
    server = PrefixCacheServer(three_steps).start()
    yield server
    server.stop()


def test_cached_prompt_tokens_the_server_reports_reach_usage_history_and_graph(caching_server):
    rlm = RLM(model="openai/bench", api_base=caching_server.base_url, enable_history=True, enable_graph_tracking=True)
    result = rlm.run("What does the summary say?", CONTEXT)
    reported = sum(u["prompt_tokens_details"]["cached_tokens"] for u in caching_server.usages)
    assert result.answer == "noted"
    assert reported > 0
    assert result.cached_prompt_tokens == reported
    assert result.usage["openai/bench"].cached_prompt_tokens == reported
    assert result.to_dict()["cached_prompt_tokens"] == reported
    assert sum(r["cached_prompt_tokens"] for r in rlm.get_history()) == reported
    graph = rlm.get_graph()
    assert sum(graph.nodes[n]["cached_prompt_tokens"] for n in graph.nodes) == reported


def test_cached_prompt_tokens_are_priced_at_the_cache_read_rate():
    fresh = estimate_cost("openai/gpt-4o-mini", 10_000, 0)
    cached = estimate_cost("openai/gpt-4o-mini", 10_000, 0, cached_tokens=8_000)
    assert fresh is not None and cached is not None
    assert cached < fresh
    assert estimate_cost("openai/gpt-4o-mini", 10_000, 500, cached_tokens=0) == estimate_cost(
        "openai/gpt-4o-mini", 10_000, 500
    )


def redirected(lm: dspy.LM, base_url: str) -> dspy.LM:
    """A provider's LM, pointed at a local server after its cache setting was chosen."""
    assert step_cache(lm, "probe") is not None
    lm.kwargs["api_base"] = base_url
    return lm


@pytest.mark.parametrize("driver", ["sync", "async"])
def test_openai_step_calls_carry_one_prompt_cache_key_per_run(caching_server, driver):
    lm = redirected(dspy.LM("openai/gpt-4o-mini", api_key="sk-test", cache=False), caching_server.base_url)
    rlm = RLM(model=lm)
    keys = []
    for _ in range(2):
        caching_server.requests.clear()
        answer = rlm.completion("q", CONTEXT) if driver == "sync" else asyncio.run(rlm.acompletion("q", CONTEXT))
        assert answer == "noted"
        roots = [b for b in caching_server.requests if is_root(b)]
        subs = [b for b in caching_server.requests if not is_root(b)]
        assert len(roots) == 3 and len(subs) == 1
        assert len({b.get("prompt_cache_key") for b in roots}) == 1
        assert all("prompt_cache_key" not in b for b in subs)  # one-off prompts have no prefix to keep
        keys.append(roots[0]["prompt_cache_key"])
    assert keys[0].startswith("rlm-") and keys[0] != keys[1]


def test_anthropic_step_calls_mark_the_system_prompt_and_the_conversation_end(caching_server):
    url = caching_server.base_url.removesuffix("/v1")
    lm = redirected(dspy.LM("anthropic/claude-sonnet-4-20250514", api_key="k", cache=False, num_retries=0), url)
    with contextlib.suppress(RLMError):  # the server answers in OpenAI's shape; only the request matters here
        RLM(model=lm, max_iterations=1).run("q", CONTEXT)
    body = caching_server.requests[0]
    assert body["system"][-1]["cache_control"] == {"type": "ephemeral"}
    assert body["messages"][-1]["content"][-1]["cache_control"] == {"type": "ephemeral"}


def test_no_cache_setting_where_it_does_not_apply(make_lm):
    scripted, _ = make_lm([])
    assert step_cache(scripted, "k") is None  # a custom engine
    assert step_cache(build_lm("openai/bench", api_base="http://127.0.0.1:9/v1"), "k") is None  # a server
    assert step_cache(dspy.LM("openai/gpt-4o-mini", api_key="k", api_base="http://127.0.0.1:9/v1"), "k") is None
    assert step_cache(dspy.LM("openai/gpt-4o-mini", api_key="k", engine="litellm"), "k") is None
    assert step_cache(dspy.LM("gemini/gemini-2.5-flash", api_key="k"), "k") is None  # caches by itself
    own = CacheConfig(prefix="stable")
    assert step_cache(dspy.LM("anthropic/claude-sonnet-4-20250514", api_key="k", prompt_cache=own), "k") is None
    assert step_cache(dspy.LM("openai/gpt-4o-mini", api_key="k"), "run-1") == CacheConfig(key="run-1")
    assert step_cache(dspy.LM("anthropic/claude-sonnet-4-20250514", api_key="k"), "k") == CacheConfig(prefix="history")


def test_the_llama_server_takes_the_cache_options():
    cli = pytest.importorskip("llama_cpp.server.cli")
    settings = pytest.importorskip("llama_cpp.server.settings")
    parser = argparse.ArgumentParser()
    cli.add_args_from_model(parser, settings.ModelSettings)
    args = parser.parse_args(["--model", "m.gguf", *llama_server_cache_args(1 << 30)])
    model = cli.parse_model_from_args(settings.ModelSettings, args)
    assert (model.cache, model.cache_type, model.cache_size) == (True, "ram", 1 << 30)


def test_a_step_dspy_cannot_send_natively_goes_without_the_cache_setting(caching_server):
    # `foo_bar` has no field in lm15's request: DSPy sends such calls through LiteLLM, which has no
    # prompt-cache bridge and would refuse the call if it carried a cache setting.
    lm = dspy.LM("openai/gpt-4o-mini", api_key="sk-test", cache=False, num_retries=0, foo_bar=1)
    lm = redirected(lm, caching_server.base_url)
    assert RLM(model=lm).completion("q", CONTEXT) == "noted"
    assert all(body.get("foo_bar") == 1 for body in caching_server.requests if is_root(body))
    assert all("prompt_cache_key" not in body for body in caching_server.requests)
    assert step_cache(lm, "next run") is None
