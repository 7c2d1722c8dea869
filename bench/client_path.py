"""The client path's cost, ours against the paper authors' `rlms` and DSPy's `dspy.RLM`, in one run.

One scripted OpenAI-compatible server on 127.0.0.1 (`rlm.testing.FakeOpenAIServer`, kept-alive
connections, in this process) answers every engine (`bench.peers`): ours on DSPy's native client
("native", the default) or on LiteLLM ("litellm"), `rlms` 0.1.3 from its own virtualenv, and
`dspy.RLM`. Every measurement runs in a fresh child interpreter, so imports, CPU and start-up are
the child's own; engines alternate within each repeat, so they share the machine's load:
  - host CPU per sub-call: CPU of a run whose code makes 64 `llm_query_batched` calls (0 ms
    server) minus a run making none, divided by 64 (a sandbox in another process is not counted);
  - engine time per step: wall time of a 20-step root run against a 0 ms server, per root request;
    split into the run's start (to its first request) and the steady step (median time between
    two root requests at the server: reply parsing, one REPL step, the next request);
  - 64 sub-calls of 200 ms each, at the engine's default concurrency and with all 64 in flight,
    timed by the model's own code around its `llm_query_batched` call;
  - process start -> first request arriving at the server, next to `python -c "import dspy"`.
Shown: min / median over the repeats, and the load average while each engine ran.
Run:  python -m bench.client_path [--repeat 5] [--engines native rlms dspy]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict
from typing import Any

from bench.peers import ENGINES, child_command, fenced, finish
from rlm.testing import FakeOpenAIServer

STEPS = 20
SUB_LATENCY_S = 0.2
RUN_ID = re.compile(r"RUN:(\w+):\w+ (BATCH (\d+)( slow)?|STEPS)")
BATCH_SECONDS = re.compile(r"BATCH_SECONDS=(\d+\.\d+)")
FIGURES = ("cpu_ms", "step_ms", "start_ms", "step_gap_ms", "batch_default_s", "batch_all_s", "first_request_s")


def batch_code(n: int, word: str) -> str:
    return (
        "import datetime\nt0 = datetime.datetime.now()\n"
        f"answers = llm_query_batched([f'{word} item {{i}}' for i in range({n})])\n"
        "print('BATCH_SECONDS=' + str((datetime.datetime.now() - t0).total_seconds()))\nprint(len(answers))"
    )


class ScriptedRuns:
    """Answers every engine's root requests by the run id in their query; sub-calls answer "ok"."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.arrivals: dict[str, list[float]] = defaultdict(list)  # root requests per run id
        self.batch_s: dict[str, float] = {}  # what each run's batch step printed

    def responder(self, body: dict[str, Any]) -> str:
        now = time.time()
        text = json.dumps(body["messages"])
        found = RUN_ID.search(text)
        if found is None:  # a sub-call
            if "slow item" in text:
                time.sleep(SUB_LATENCY_S)
            return "ok"
        run, engine = found.group(0).split(" ")[0], found.group(1)
        with self.lock:
            self.arrivals[run].append(now)
            step = len(self.arrivals[run]) - 1
        printed = BATCH_SECONDS.search(text)
        if printed:
            self.batch_s[run] = float(printed.group(1))
        if found.group(2) == "STEPS":
            code = f"print({step})" if step < STEPS else finish(engine, "done")
        else:
            word = "slow" if found.group(4) else "quick"
            code = batch_code(int(found.group(3)), word) if step == 0 else finish(engine, "done")
        return fenced(engine, code)

    def first_arrival_after(self, start: float) -> float:
        with self.lock:
            return min(t for times in self.arrivals.values() for t in times if t >= start)


def child(engine: str, base_url: str, what: str) -> dict[str, Any]:
    done = subprocess.run(
        child_command(engine, base_url, what), capture_output=True, text=True, timeout=600, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{engine} {what}: {done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def measure(engine: str, server: FakeOpenAIServer, runs: ScriptedRuns) -> dict[str, float]:
    """One repeat of every figure for `engine`."""
    row: dict[str, float] = {"cpu_ms": child(engine, server.base_url, "cpu")["cpu_ms"]}
    steps = child(engine, server.base_url, "steps")
    seen = runs.arrivals[steps["run"]]
    row["step_ms"] = (steps["w1"] - steps["w0"]) / len(seen) * 1000
    row["start_ms"] = (seen[0] - steps["w0"]) * 1000
    row["step_gap_ms"] = statistics.median(b - a for a, b in itertools.pairwise(seen)) * 1000
    default = child(engine, server.base_url, "default")
    row["default_concurrency"] = default["concurrency"]
    row["batch_default_s"] = runs.batch_s[default["run"]]
    row["batch_all_s"] = runs.batch_s[child(engine, server.base_url, "all")["run"]]
    start = time.time()
    child(engine, server.base_url, "first")
    row["first_request_s"] = runs.first_arrival_after(start) - start
    return row


def import_dspy_s() -> float:
    start = time.time()
    subprocess.run([sys.executable, "-c", "import dspy"], check=True)
    return time.time() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per figure: min and median are shown")
    parser.add_argument("--engines", nargs="+", choices=ENGINES, default=["native", "rlms", "dspy"])
    args = parser.parse_args(argv)
    runs = ScriptedRuns()
    server = FakeOpenAIServer(runs.responder).start()
    repeats: dict[str, list[dict[str, float]]] = defaultdict(list)
    loads: dict[str, list[float]] = defaultdict(list)
    dspy_s = []
    try:
        for _ in range(args.repeat):
            dspy_s.append(import_dspy_s())
            for engine in args.engines:  # alternating, so every engine sees the same load
                loads[engine].append(os.getloadavg()[0])
                repeats[engine].append(measure(engine, server, runs))
                loads[engine].append(os.getloadavg()[0])
    finally:
        server.stop()
    summary = {
        engine: {
            key: (min(r[key] for r in rows), statistics.median(r[key] for r in rows))
            for key in (*FIGURES, "default_concurrency")
        }
        for engine, rows in repeats.items()
    }
    print(
        f"min / median of {args.repeat} runs; `python -c 'import dspy'` {min(dspy_s):.2f} / "
        f"{statistics.median(dspy_s):.2f} s; 1-minute load average {min(min(v) for v in loads.values()):.2f}-"
        f"{max(max(v) for v in loads.values()):.2f} on {os.cpu_count()} cores"
    )
    header = ("engine", "CPU/sub-call ms", "ms/step (0 ms)", "= start ms", "+ step ms", "64x200ms default")
    print(f"{header[0]:>8} {header[1]:>16} {header[2]:>15} {header[3]:>13} {header[4]:>13} {header[5]:>22}", end="")
    print(f" {'64x200ms all':>13} {'start->1st req s':>17} {'load':>10}")

    def pair(values: tuple[float, float], digits: int) -> str:
        return f"{values[0]:.{digits}f} / {values[1]:.{digits}f}"

    for engine, row in summary.items():
        default = f"{pair(row['batch_default_s'], 2)} (c={row['default_concurrency'][1]:.0f})"
        load = f"{min(loads[engine]):.1f}-{max(loads[engine]):.1f}"
        print(
            f"{engine:>8} {pair(row['cpu_ms'], 2):>16} {pair(row['step_ms'], 1):>15} {pair(row['start_ms'], 1):>13} "
            f"{pair(row['step_gap_ms'], 2):>13} {default:>22} {pair(row['batch_all_s'], 2):>13} "
            f"{pair(row['first_request_s'], 2):>17} {load:>10}"
        )
    print(json.dumps({"import_dspy_s": dspy_s, "loads": loads, "runs": repeats}))


if __name__ == "__main__":
    main()
