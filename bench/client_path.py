"""The client path's cost: DSPy's native client (lm15, the default now) against LiteLLM (engine="litellm").

Against scripted OpenAI-compatible servers on 127.0.0.1 (in this process); every measurement runs in
a fresh child interpreter, so imports, CPU time and start-up are the child's own:
  - host CPU per sub-call: CPU of a run with 64 llm_query calls (0 ms server) minus a run without,
    divided by 64 (the sandbox worker's CPU is another process and not counted);
  - engine time per step: wall time of a 20-step root run against a 0 ms server, per step; split
    into the run's start (to its first request: facade, root sandbox) and the steady step (median
    time between two root requests at the server: reply parsing, one sandbox step, next request);
  - 64 sub-calls of 200 ms each, at the default max_concurrency and with all 64 in flight;
  - process start -> first request arriving at the server, next to `python -c "import dspy"`.
Run:  python -m bench.client_path [--repeat 3] [--paths native litellm]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import subprocess
import sys
import time

from rlm.engine.prompts import INSTRUCTIONS
from rlm.testing import FakeOpenAIServer

SUBCALLS = 64
STEPS = 20
SUB_LATENCY_S = 0.2
PATHS = ("native", "litellm")


def is_root(body: dict) -> bool:
    return any(INSTRUCTIONS[:60] in (m.get("content") or "") for m in body["messages"])


def steps_taken(body: dict) -> int:
    return sum(m["role"] == "assistant" for m in body["messages"])


def batch_code(n: int, word: str) -> str:
    prompts = f"[f'{word} item {{i}}' for i in range({n})]"
    return f"```python\nanswers = llm_query_batched({prompts})\nFINAL(str(len(answers)))\n```"


def make_responder(arrivals: list[float]):
    """Root replies are chosen by the query's first word: `batch N`, `steps N`; sub-calls may sleep."""

    def responder(body: dict) -> str:
        arrivals.append(time.time())
        if not is_root(body):
            if "slow item" in json.dumps(body["messages"]):
                time.sleep(SUB_LATENCY_S)
            return "ok"
        task = next(m["content"] for m in body["messages"] if m["role"] == "user")
        if "BATCH" in task:
            return batch_code(int(task.split("BATCH ")[1].split()[0]), "slow" if "slow" in task else "quick")
        done = steps_taken(body)
        return f"```python\nprint({done})\n```" if done < STEPS else "FINAL(done)"

    return responder


CHILD = """
import json, sys, time
from rlm import RLM, LMCalled
path, base, what = sys.argv[1], sys.argv[2], sys.argv[3]
extra = {"engine": "litellm"} if path == "litellm" else {}
def rlm(**kw):
    return RLM(model="openai/bench", api_base=base, max_iterations=30, **extra, **kw)
if what == "first":
    rlm().completion("BATCH 0", "ctx")
    print(json.dumps({}))
    sys.exit()
rlm().completion("BATCH 4", "ctx")  # warm-up: imports, connection pools, the sandbox
if what == "cpu":
    c0 = time.process_time(); rlm().completion("BATCH 0", "ctx"); c1 = time.process_time()
    rlm().completion("BATCH %d", "ctx"); c2 = time.process_time()
    print(json.dumps({"cpu_ms": ((c2 - c1) - (c1 - c0)) / %d * 1000}))
elif what == "steps":
    w0 = time.time(); t0 = time.perf_counter(); result = rlm().run("STEPS", "ctx"); t1 = time.perf_counter()
    print(json.dumps({"step_ms": (t1 - t0) / result.iterations * 1000, "steps": result.iterations,
                      "w0": w0, "w1": time.time()}))
else:
    spans = []
    def on_event(event):
        if isinstance(event, LMCalled) and event.purpose == "llm_query":
            spans.append((event.timestamp - event.latency_s, event.timestamp))
    kw = {} if what == "default" else {"max_concurrency": %d}
    r = rlm(on_event=on_event, **kw)
    assert r.completion("BATCH %d slow", "ctx") == "%d"
    print(json.dumps({"batch_s": max(e for _, e in spans) - min(s for s, _ in spans),
                      "concurrency": r.config.max_concurrency}))
""".replace("%d", str(SUBCALLS))


def child(path: str, base_url: str, what: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, path, base_url, what], capture_output=True, text=True, timeout=600, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def step_figures(run: dict, arrivals: list[float]) -> dict[str, float]:
    """Wall time per step, split into the run's start (to its first request) and the steady step."""
    seen = sorted(t for t in arrivals if run["w0"] <= t <= run["w1"])
    gaps = [b - a for a, b in itertools.pairwise(seen)]
    return {
        "step_ms": run["step_ms"],
        "step_gap_ms": statistics.median(gaps) * 1000,
        "start_ms": (seen[0] - run["w0"]) * 1000,
    }


def first_request_s(path: str, server: FakeOpenAIServer, arrivals: list[float]) -> float:
    arrivals.clear()
    start = time.time()
    child(path, server.base_url, "first")
    return arrivals[0] - start


def import_dspy_s() -> float:
    start = time.time()
    subprocess.run([sys.executable, "-c", "import dspy"], check=True)
    return time.time() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; the median is shown")
    parser.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS), help="client paths to measure")
    args = parser.parse_args(argv)
    arrivals: list[float] = []
    server = FakeOpenAIServer(make_responder(arrivals)).start()
    med = statistics.median
    rows: dict[str, dict[str, float]] = {}
    try:
        dspy_s = med(import_dspy_s() for _ in range(args.repeat))
        for path in args.paths:
            row = rows[path] = {}
            row["cpu_ms"] = med(child(path, server.base_url, "cpu")["cpu_ms"] for _ in range(args.repeat))
            steps = [step_figures(child(path, server.base_url, "steps"), arrivals) for _ in range(args.repeat)]
            for key in steps[0]:
                row[key] = med(s[key] for s in steps)
            default = [child(path, server.base_url, "default") for _ in range(args.repeat)]
            row["default_concurrency"] = default[0]["concurrency"]
            row["batch_default_s"] = med(d["batch_s"] for d in default)
            row["batch_all_s"] = med(child(path, server.base_url, "all")["batch_s"] for _ in range(args.repeat))
            row["first_request_s"] = med(first_request_s(path, server, arrivals) for _ in range(args.repeat))
    finally:
        server.stop()
    print(f"median of {args.repeat} runs; `python -c 'import dspy'` takes {dspy_s:.2f} s here")
    print(
        f"{'client path':>12} {'CPU/sub-call ms':>16} {'ms/step (0 ms)':>15} {'= start ms':>11} {'+ step ms':>10} "
        f"{'64x200ms default':>17} {'64x200ms all':>13} {'start->1st req s':>17}"
    )
    for path, row in rows.items():
        default = f"{row['batch_default_s']:.2f} s (c={row['default_concurrency']:.0f})"
        print(
            f"{path:>12} {row['cpu_ms']:>16.2f} {row['step_ms']:>15.1f} {row['start_ms']:>11.1f} "
            f"{row['step_gap_ms']:>10.2f} {default:>17} "
            f"{row['batch_all_s']:>11.2f} s {row['first_request_s']:>17.2f}"
        )
    print(json.dumps({"import_dspy_s": dspy_s, **rows}))


if __name__ == "__main__":
    main()
