"""Cached-token share of root prompts, as a provider with a prefix cache reports it in its usage.

`PrefixCacheServer` is the scripted OpenAI-compatible server (`rlm.testing.FakeOpenAIServer`) with
a `usage` that caches like OpenAI does: a prompt's tokens that repeat the beginning of an earlier
prompt are "cached" (counted in 128-token blocks, from 1,024 tokens on; ~4 characters a token) and
reported as `usage.prompt_tokens_details.cached_tokens`. A 10-step run, with an `llm_query` sub-call in every
step interleaved with the root's calls, then reads the share back from `RLMResult.usage`, the
call history and the graph, and checks the three against what the server reported.
Run:  python -m bench.prefix_cache
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rlm.engine.prompts import INSTRUCTIONS
from rlm.testing import FakeOpenAIServer

STEPS = 10
CHARS_PER_TOKEN = 4
BLOCK = 128  # OpenAI counts cache hits in blocks of 128 tokens ...
MINIMUM = 1024  # ... for prompts of 1,024 tokens or more


def render(messages: list[dict[str, Any]]) -> str:
    return "".join(f"<{m['role']}>{m.get('content') or ''}" for m in messages)


def common_prefix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


@dataclass
class PrefixCacheServer:
    """Chat completions on 127.0.0.1 (`rlm.testing.FakeOpenAIServer`) with a provider-like prefix
    cache reported in `usage`; `requests` and `usages` hold each call's body and usage, in step."""

    responder: Callable[[dict[str, Any]], str]
    requests: list[dict[str, Any]] = field(default_factory=list)
    usages: list[dict[str, Any]] = field(default_factory=list)
    _seen: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    server: FakeOpenAIServer | None = None

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return self.server.base_url

    def usage(self, body: dict[str, Any]) -> dict[str, Any]:
        text = render(body.get("messages", []))
        prompt = len(text) // CHARS_PER_TOKEN
        with self._lock:
            reused = max((common_prefix(text, seen) for seen in self._seen), default=0)
            self._seen.append(text)
            cached = reused // CHARS_PER_TOKEN // BLOCK * BLOCK if prompt >= MINIMUM else 0
            usage = {
                "prompt_tokens": prompt,
                "completion_tokens": 10,
                "total_tokens": prompt + 10,
                "prompt_tokens_details": {"cached_tokens": cached},
            }
            self.requests.append(body)
            self.usages.append(usage)
        return usage

    def start(self) -> PrefixCacheServer:
        self.server = FakeOpenAIServer(self.responder, usage=self.usage).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


def is_root(body: dict[str, Any]) -> bool:
    return any(INSTRUCTIONS[:60] in (m.get("content") or "") for m in body["messages"])


def ten_steps(body: dict[str, Any]) -> str:
    """Root: one sub-call and a page of output per step, FINAL after STEPS steps; sub-calls: a word."""
    if not is_root(body):
        return "noted"
    done = sum(m["role"] == "assistant" for m in body["messages"])
    if done >= STEPS - 1:
        return "```python\nFINAL(str(len(notes)))\n```"
    start = done * 1500
    keep = "notes = []\n" if done == 0 else ""
    return (
        f"Step {done + 1}: read the next part.\n```python\n{keep}"
        f"part = context[{start}:{start + 1500}]\nprint(part)\n"
        "notes.append(llm_query('Summarize: ' + part[:200]))\n```"
    )


def main() -> None:
    from rlm import RLM

    server = PrefixCacheServer(ten_steps).start()
    try:
        rlm = RLM(
            model="openai/bench",
            api_base=server.base_url,
            max_iterations=STEPS + 2,
            enable_history=True,
            enable_graph_tracking=True,
        )
        context = "".join(f"record {i}: value={i * 7 % 13} label=L{i % 6}\n" for i in range(5000))
        result = rlm.run("How many notes did you take?", context)
    finally:
        server.stop()
    roots = [u for body, u in zip(server.requests, server.usages, strict=True) if is_root(body)]
    later = roots[1:]
    share = sum(u["prompt_tokens_details"]["cached_tokens"] for u in later) / sum(u["prompt_tokens"] for u in later)
    # The most a cache could serve: what each root prompt repeats of the one before, to the character.
    texts = [render(body["messages"]) for body in server.requests if is_root(body)]
    bound = sum(common_prefix(a, b) for a, b in itertools.pairwise(texts)) / sum(len(t) for t in texts[1:])
    reported = sum(u["prompt_tokens_details"]["cached_tokens"] for u in server.usages)
    history = rlm.get_history()
    graph = rlm.get_graph()
    print(f"{result.iterations} root steps, {len(server.requests) - len(roots)} sub-calls interleaved with them")
    print(
        f"root prompts after step 1: {share:.1%} of their tokens served from the cache (repeated prefix: {bound:.1%})"
    )
    for i, u in enumerate(roots, 1):
        print(
            f"  step {i:>2}: {u['prompt_tokens']:>6} prompt tokens, {u['prompt_tokens_details']['cached_tokens']:>6} cached"
        )
    print(
        f"cached tokens reported by the server {reported}; in RLMResult.usage {result.cached_prompt_tokens}, "
        f"history {sum(r['cached_prompt_tokens'] for r in history)}, "
        f"graph {sum(graph.nodes[n]['cached_prompt_tokens'] for n in graph.nodes)}"
    )
    print(
        json.dumps(
            {"root_cached_share_after_step_1": share, "repeated_prefix_share": bound, "steps": result.iterations}
        )
    )


if __name__ == "__main__":
    main()
