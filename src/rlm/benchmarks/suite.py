"""`rlm bench --suite paper`: the paper's benchmarks through RLM, RLM without sub-calls, the base model
directly and dspy.RLM, summarised as the paper's Table 1 and Figure 1, with a cause for each wrong RLM answer.

    rlm bench --suite paper --model local --sizes 8k --items 2 --methods rlm,direct --plot fig.png

Called by the harness when `--suite` is given; the runners are the harness's own, the items come
from `benchmarks/paper`, the causes from `failures.py`, the table from `report.py`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from typing import Any

from rlm.benchmarks.failures import count_causes
from rlm.benchmarks.harness import Outcome, lms_for, run_direct, run_dspy_rlm, run_rlm_with_cause
from rlm.benchmarks.no_subcalls import without_subcalls
from rlm.benchmarks.paper import BENCHMARKS, make_paper_items, parse_size
from rlm.benchmarks.paper.item import PaperItem
from rlm.benchmarks.report import print_report

METHODS = ("rlm", "rlm_no_sub", "direct", "dspy_rlm")
LABELS = {"rlm": "RLM", "rlm_no_sub": "RLM (no sub-calls)", "direct": "base model", "dspy_rlm": "dspy.RLM"}
RLM_METHODS = ("rlm", "rlm_no_sub")


def _listed(text: str, allowed: tuple[str, ...] | list[str], what: str) -> list[str]:
    chosen = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [c for c in chosen if c not in allowed]
    if unknown or not chosen:
        raise ValueError(f"unknown {what} {', '.join(unknown) or '(none)'}: use {', '.join(allowed)}")
    return chosen


def history_file(args: argparse.Namespace, item: PaperItem, method: str) -> str | None:
    if not args.history_dir:
        return None
    name = f"{item.benchmark}-{item.size_tokens}-seed{item.seed}-{method}.json"
    return os.path.join(args.history_dir, name)


def run_item(args: argparse.Namespace, index: int, item: PaperItem, method: str, lms: dict[str, Any]) -> Outcome:
    """One item through one method; a wrong RLM answer gets its cause in `extra["cause"]`."""
    if method in RLM_METHODS:
        prepare = without_subcalls if method == "rlm_no_sub" else None
        outcome = run_rlm_with_cause(args, index, item, history_file(args, item, method), method, prepare)
    elif method == "direct":
        outcome = run_direct(args, index, item, lms["direct"])
    else:
        outcome = run_dspy_rlm(args, index, item, lms["agent"])
    outcome.method = method
    outcome.extra.update(benchmark=item.benchmark, size_tokens=item.size_tokens, seed=item.seed)
    return outcome


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def summarise_suite(outcomes: list[Outcome]) -> dict[str, Any]:
    """Table 1 (method x benchmark), Figure 1's points (score per size) and the failure causes."""
    table: dict[str, dict[str, dict[str, Any]]] = {}
    curve: dict[str, dict[str, dict[int, float]]] = {}
    for method in dict.fromkeys(o.method for o in outcomes):
        for benchmark in dict.fromkeys(o.extra["benchmark"] for o in outcomes):
            mine = [o for o in outcomes if o.method == method and o.extra["benchmark"] == benchmark]
            if not mine:
                continue
            costs = [o.cost for o in mine]
            table.setdefault(method, {})[benchmark] = {
                "score": round(100 * _mean([o.score or 0.0 for o in mine]), 1),
                "items": len(mine),
                "mean_cost": None if any(c is None for c in costs) else round(_mean([c or 0.0 for c in costs]), 5),
                "mean_prompt_tokens": round(_mean([o.prompt_tokens for o in mine])),
                "mean_completion_tokens": round(_mean([o.completion_tokens for o in mine])),
                "mean_llm_calls": round(_mean([o.llm_calls for o in mine]), 1),
                "mean_wall_s": round(_mean([o.wall_s for o in mine]), 1),
            }
            for size in sorted({o.extra["size_tokens"] for o in mine}):
                at = [o.score or 0.0 for o in mine if o.extra["size_tokens"] == size]
                curve.setdefault(method, {}).setdefault(benchmark, {})[size] = round(100 * _mean(at), 1)
    failures = {
        method: count_causes([o.extra["cause"] for o in outcomes if o.method == method and "cause" in o.extra])
        for method in RLM_METHODS
        if any(o.method == method for o in outcomes)
    }
    return {"table": table, "curve": curve, "failures": failures}


def _write_json(args: argparse.Namespace, summary: dict[str, Any], outcomes: list[Outcome]) -> None:
    report = {"args": {k: str(v) for k, v in vars(args).items()}, **summary, "outcomes": [asdict(o) for o in outcomes]}
    with open(args.json, "w") as out:
        json.dump(report, out, indent=2)


def run_suite(args: argparse.Namespace) -> int:
    if args.suite != "paper":
        print(f"unknown suite {args.suite!r}: use paper", file=sys.stderr)
        return 2
    try:
        methods = _listed(args.methods or ",".join(METHODS), METHODS, "method(s)")
        benchmarks = _listed(args.benchmarks, list(BENCHMARKS), "benchmark(s)")
        sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    count = args.items if args.items is not None else 2
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    needs_lm = set(methods) - set(RLM_METHODS)
    direct_lm, agent_lm = lms_for(args) if needs_lm else (None, None)
    lms = {"direct": direct_lm, "agent": agent_lm}
    outcomes: list[Outcome] = []
    for benchmark in benchmarks:
        for size in sizes:
            for index, item in enumerate(make_paper_items(benchmark, size, count, args.seed)):
                for method in methods:
                    outcome = run_item(args, index, item, method, lms)
                    outcomes.append(outcome)
                    if args.json:  # kept as it goes: a long run stopped half way keeps what it measured
                        _write_json(args, {"partial": True}, outcomes)
                    cause = f" cause={outcome.extra['cause']}" if "cause" in outcome.extra else ""
                    print(f"[{outcome.score or 0.0:.2f}] {benchmark} {size} item {index} {method:>10}: "
                          f"{outcome.answer[:50]!r} (expected {outcome.expected[:40]!r}) {outcome.wall_s:.1f}s "
                          f"{outcome.note}{cause}", file=sys.stderr, flush=True)  # fmt: skip
    summary = summarise_suite(outcomes)
    print_report(summary, args, LABELS)
    if args.json:
        _write_json(args, summary, outcomes)
    if args.plot:
        from rlm.benchmarks.plot import plot_curves

        plot_curves(summary["curve"], args.plot, LABELS, title=f"model={args.model}")
        print(f"figure written to {args.plot}")
    return 0
