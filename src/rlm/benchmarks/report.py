"""The paper suite's printed report: Table 1 (methods x benchmarks: score and mean cost per query),
usage per query (tokens, calls, wall time), score per context length, and the failure causes.

Called by `suite.py` after a run; reads the summary `summarise_suite` built.
"""

from __future__ import annotations

import argparse
from typing import Any

from rlm.benchmarks.paper import TITLES

COST_NOTE = "cost: mean USD per query from LiteLLM's price table; n/a = the model has no price (e.g. a local model)"


def _cell(row: dict[str, Any] | None) -> str:
    if row is None:
        return "-"
    cost = "n/a" if row["mean_cost"] is None else f"${row['mean_cost']:.4f}"
    return f"{row['score']:5.1f} ({cost})"


def print_report(summary: dict[str, Any], args: argparse.Namespace, labels: dict[str, str]) -> None:
    table, curve, failures = summary["table"], summary["curve"], summary["failures"]
    benchmarks = list(dict.fromkeys(b for rows in table.values() for b in rows))
    width = 20
    print(f"\nsuite=paper sizes={args.sizes} items={args.items or 2} per size seed={args.seed} model={args.model}")
    print("Table 1 shape: score (0-100; counts 0.75^|err|, pairs F1, others right/wrong) and (mean cost per query)")
    print(f"{'method':<20}" + "".join(f"{TITLES.get(b, b):>{width}}" for b in benchmarks))
    for method, rows in table.items():
        print(f"{labels.get(method, method):<20}" + "".join(f"{_cell(rows.get(b)):>{width}}" for b in benchmarks))
    print(COST_NOTE)
    print("\nper query: mean tokens in/out, LM calls (c), wall seconds (s)")
    print(f"{'method':<20}" + "".join(f"{TITLES.get(b, b):>{width + 6}}" for b in benchmarks))
    for method, rows in table.items():
        cells = []
        for b in benchmarks:
            r = rows.get(b)
            cells.append("-" if r is None else f"{r['mean_prompt_tokens']}/{r['mean_completion_tokens']} "
                         f"{r['mean_llm_calls']}c {r['mean_wall_s']}s")  # fmt: skip
        print(f"{labels.get(method, method):<20}" + "".join(f"{c:>{width + 6}}" for c in cells))
    print("\nscore per context length (tokens), as Figure 1")
    for method, by_benchmark in curve.items():
        for benchmark, points in by_benchmark.items():
            line = "  ".join(f"{size}:{score:.1f}" for size, score in sorted(points.items()))
            print(f"{labels.get(method, method):<20}{TITLES.get(benchmark, benchmark):<14}{line}")
    if failures:
        print("\nwhy RLM answers were wrong (one cause per wrong item; rules in rlm/benchmarks/failures.py)")
        for method, counts in failures.items():
            listed = ", ".join(f"{cause} {n}" for cause, n in counts.items() if n) or "none wrong"
            print(f"{labels.get(method, method):<20}{listed}")
