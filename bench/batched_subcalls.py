"""llm_query_batched of 64 prompts against a local server that answers each in 200 ms.

Measures the batch's wall time at several concurrency settings, through the real HTTP path.
Run:  python -m bench.batched_subcalls
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from rlm import RLM, LMCalled
from rlm.engine.prompts import INSTRUCTIONS
from rlm.testing import FakeOpenAIServer

PROMPTS = 64
SUB_LATENCY_S = 0.2
ROOT_CODE = (
    f"```python\nanswers = llm_query_batched([f'item {{i}}' for i in range({PROMPTS})])\nFINAL(str(len(answers)))\n```"
)


def responder(body: dict) -> str:
    if any(INSTRUCTIONS[:60] in (m.get("content") or "") for m in body["messages"]):
        return ROOT_CODE
    time.sleep(SUB_LATENCY_S)
    return "ok"


def batch_wall_time(server: FakeOpenAIServer, concurrency: int, model: str) -> float:
    spans: list[tuple[float, float]] = []

    def on_event(event: object) -> None:
        if isinstance(event, LMCalled) and event.purpose == "llm_query":
            spans.append((event.timestamp - event.latency_s, event.timestamp))

    rlm = RLM(model=model, api_base=server.base_url, max_concurrency=concurrency, on_event=on_event)
    assert rlm.completion("q", "ctx") == str(PROMPTS)
    return max(end for _, end in spans) - min(start for start, _ in spans)


def main() -> None:
    server = FakeOpenAIServer(responder).start()
    try:
        batch_wall_time(server, 4, "openai/bench")  # warm-up: imports and connection pools
        print(
            f"{PROMPTS} prompts, {SUB_LATENCY_S * 1000:.0f} ms each; sequential would take {PROMPTS * SUB_LATENCY_S:.1f} s"
        )
        # The model name matters: LiteLLM prices every call, and an unlisted name costs it a table scan.
        print(f"{'model name':>20} {'concurrency':>12} {'batch wall s':>13} {'ideal s':>8}")
        for model in ("openai/bench", "openai/gpt-4o-mini"):
            for concurrency in (1, 8, 16, 32):
                wall = batch_wall_time(server, concurrency, model)
                ideal = -(-PROMPTS // concurrency) * SUB_LATENCY_S
                print(f"{model:>20} {concurrency:>12} {wall:>13.2f} {ideal:>8.2f}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
