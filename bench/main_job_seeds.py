"""The README's main job over more logs: `examples/local_model.py`'s query on `make_log(seed)`.

    python -m bench.main_job_seeds 11 12 13 --history-dir /tmp/main_job

Prints one JSON line per seed: the answer, the expected code, right or wrong (the example's own
check, `expected in answer`), how the run ended, steps, LM calls and seconds. Uses the bundled
model as the example does (`RLM(model="local", max_iterations=6, max_depth=1)`); set
`RLM_LOCAL_PORT` to use a server already running. docs/BENCHMARKS.md ("Reading advice in code")
holds the figures for seeds 11-26.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from examples.local_model import make_log

from rlm import RLM

QUERY = "What is the recovery code in the WARN line? Answer with the code only."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("seeds", nargs="+", type=int)
    parser.add_argument("--history-dir", type=Path, help="write each run's history here")
    args = parser.parse_args()
    for seed in args.seeds:
        log, expected = make_log(seed)
        history = {}
        if args.history_dir:
            args.history_dir.mkdir(parents=True, exist_ok=True)
            history = {"enable_history": True, "history_output_path": args.history_dir / f"seed_{seed}.json"}
        started = time.time()
        result = RLM(model="local", max_iterations=6, max_depth=1, **history).run(QUERY, log)
        row = {
            "seed": seed,
            "answer": result.answer[:80],
            "expected": expected,
            "right": expected in result.answer,
            "finish": result.finish_reason,
            "steps": result.iterations,
            "calls": result.llm_calls,
            "seconds": round(time.time() - started),
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
