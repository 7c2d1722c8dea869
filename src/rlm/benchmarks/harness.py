"""Benchmark harness: RLM against direct prompting (and DSPy's own dspy.RLM) on the same items.

    rlm bench --task counting --size 60k --items 5 --model gpt-5-mini
    rlm bench --task needle --size 60k --items 5 --model local --methods rlm,direct

(`python -m bench.run ...` in a checkout is the same command.)

Prints accuracy, LM calls, tokens in/out, cost and wall time per method, as a table and as JSON
(--json FILE). The direct baseline puts the whole context into one prompt, truncated to the model's
window when it does not fit, and says so. dspy.RLM runs on our RestrictedInterpreter: DSPy's default
Deno/Pyodide interpreter cannot be installed on these machines.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import dspy

from rlm import RLM, RestrictedInterpreter
from rlm.benchmarks.failures import classify, count_causes
from rlm.benchmarks.tasks import SIZES, TASKS, make_items
from rlm.engine.calls import estimate_cost
from rlm.engine.result import RLMResult
from rlm.facade import DEFAULT_TIMEOUT_S, LOCAL_TIMEOUT_S
from rlm.models.resolve import build_lm, is_local_model

CHARS_PER_TOKEN = 4


class BenchItem(Protocol):
    """What the runners need of an item: `tasks.Item` (score: bool) or `paper.PaperItem` (score: 0..1)."""

    @property
    def query(self) -> str: ...
    @property
    def context(self) -> Any: ...
    @property
    def answer(self) -> str: ...
    @property
    def kind(self) -> str: ...

    def score(self, prediction: str) -> float: ...


@dataclass
class Outcome:
    method: str
    item: int
    kind: str
    expected: str
    answer: str
    correct: bool
    llm_calls: int
    prompt_tokens: int
    completion_tokens: int
    cost: float | None
    wall_s: float
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    score: float | None = None  # 0..1 where the task gives partial credit; else 1.0 or 0.0 as `correct`

    def __post_init__(self) -> None:
        if self.score is None:
            self.score = float(self.correct)


def context_text(item: BenchItem) -> str:
    if isinstance(item.context, str):
        return item.context
    return "\n\n".join(f"=== {name} ===\n{text}" for name, text in item.context.items())


def usage_of(tracker: Any) -> tuple[int, int, int, float | None]:
    calls = prompt = completion = 0
    cost: float | None = 0.0
    for model, entries in tracker.usage_data.items():
        for entry in entries:
            calls += 1
            p, c = int(entry.get("prompt_tokens") or 0), int(entry.get("completion_tokens") or 0)
            prompt, completion = prompt + p, completion + c
            price = estimate_cost(model, p, c)
            cost = None if cost is None or price is None else cost + price
    return calls, prompt, completion, cost


def history_path(args: argparse.Namespace, index: int) -> str | None:
    if not args.history_dir:
        return None
    return os.path.join(args.history_dir, f"{args.task}-{args.size}-seed{args.seed}-item{index}.json")


def run_rlm(args: argparse.Namespace, index: int, item: BenchItem) -> Outcome:
    return run_rlm_result(args, index, item, history_path(args, index))[0]


def run_rlm_with_cause(
    args: argparse.Namespace,
    index: int,
    item: BenchItem,
    history: str | None = None,
    method: str = "rlm",
    prepare: Callable[[RLM], RLM] | None = None,
) -> Outcome:
    """`run_rlm_result`'s outcome, with a wrong answer's cause (`failures.py`) in `extra["cause"]`."""
    outcome, result = run_rlm_result(args, index, item, history, method, prepare)
    if not outcome.correct:
        reason, trajectory = (result.finish_reason, result.trajectory) if result else ("error", ())
        error = "" if result else outcome.note
        outcome.extra["cause"] = classify(item, outcome.answer, reason, trajectory, error, args.window)
    return outcome


def run_rlm_result(
    args: argparse.Namespace,
    index: int,
    item: BenchItem,
    history: str | None,
    method: str = "rlm",
    prepare: Callable[[RLM], RLM] | None = None,
) -> tuple[Outcome, RLMResult | None]:
    """One RLM item: its outcome and the run's result (None when the run raised; the note says why).

    `prepare` adjusts the RLM before the run (the paper suite's no-sub-call ablation)."""
    rlm = RLM(model=args.model, recursive_model=args.recursive_model, api_base=args.api_base,
              max_iterations=args.max_iterations, max_depth=args.max_depth, max_llm_calls=args.max_llm_calls,
              verbose=args.verbose, history_output_path=history, timeout=args.timeout)  # fmt: skip
    if prepare is not None:
        rlm = prepare(rlm)
    started = time.perf_counter()
    try:
        result = rlm.run(item.query, item.context)
    except Exception as exc:  # a failed item is a wrong answer, recorded with its reason
        note = f"error: {type(exc).__name__}: {exc}"
        return Outcome(method, index, item.kind, item.answer, "", False, 0, 0, 0, None,
                       time.perf_counter() - started, note, score=0.0), None  # fmt: skip
    graded = float(item.score(result.answer))
    return Outcome(
        method, index, item.kind, item.answer, result.answer, graded >= 1.0, result.llm_calls,
        result.prompt_tokens, result.completion_tokens, result.cost, time.perf_counter() - started,
        note=f"finish={result.finish_reason}", extra={"iterations": result.iterations, "depth": result.depth},
        score=graded,
    ), result  # fmt: skip


def run_direct(args: argparse.Namespace, index: int, item: BenchItem, lm: dspy.BaseLM) -> Outcome:
    whole = context_text(item)
    budget_chars = (args.window - args.answer_tokens - 300) * CHARS_PER_TOKEN
    started = time.perf_counter()
    answer, error = "", ""
    with dspy.track_usage() as tracker:
        for _ in range(6):
            text = whole[:budget_chars]  # keep the head: a reader that runs out of window stops reading there
            prompt = f"{text}\n\nAnswer the question about the text above.\nQuestion: {item.query}\nAnswer:"
            try:
                outputs = lm(prompt)
                answer, error = str(outputs[0] if outputs else ""), ""
                break
            except Exception as exc:
                error = f"; error: {type(exc).__name__}: {exc}"
                if "ContextWindowExceeded" not in error:
                    break
                # the text tokenises more densely than estimated (digits): cut it further and retry
                budget_chars = int(min(budget_chars, len(text)) * 0.85)
    note = "whole context" if len(text) == len(whole) else f"truncated to {len(text):,} of {len(whole):,} chars"
    calls, prompt_tokens, completion_tokens, cost = usage_of(tracker)
    graded = float(item.score(answer))
    return Outcome("direct", index, item.kind, item.answer, answer.strip(), graded >= 1.0, calls, prompt_tokens,
                   completion_tokens, cost, time.perf_counter() - started, note + error, score=graded)  # fmt: skip


def run_dspy_rlm(args: argparse.Namespace, index: int, item: BenchItem, lm: dspy.BaseLM) -> Outcome:
    program = dspy.RLM("context, query -> answer", max_iters=args.max_iterations, sub_lm=lm,
                       interpreter_factory=RestrictedInterpreter)  # fmt: skip
    started = time.perf_counter()
    note = ""
    with dspy.track_usage() as tracker, dspy.context(lm=lm):
        try:
            answer = str(program(context=item.context, query=item.query).answer)
        except Exception as exc:
            answer, note = "", f"error: {type(exc).__name__}: {exc}"
    calls, prompt_tokens, completion_tokens, cost = usage_of(tracker)
    graded = float(item.score(answer))
    return Outcome("dspy.RLM", index, item.kind, item.answer, answer.strip(), graded >= 1.0, calls, prompt_tokens,
                   completion_tokens, cost, time.perf_counter() - started, note, score=graded)  # fmt: skip


def summarise(outcomes: list[Outcome]) -> list[dict[str, Any]]:
    rows = []
    for method in dict.fromkeys(o.method for o in outcomes):
        mine = [o for o in outcomes if o.method == method]
        costs = [o.cost for o in mine]
        rows.append({
            "method": method,
            "correct": sum(o.correct for o in mine),
            "items": len(mine),
            "llm_calls": sum(o.llm_calls for o in mine),
            "prompt_tokens": sum(o.prompt_tokens for o in mine),
            "completion_tokens": sum(o.completion_tokens for o in mine),
            "cost": None if any(c is None for c in costs) else round(sum(c or 0 for c in costs), 6),
            "mean_wall_s": round(sum(o.wall_s for o in mine) / len(mine), 1),
            "max_wall_s": round(max(o.wall_s for o in mine), 1),
            "final_by_model": sum(o.note == "finish=final" for o in mine) if method == "rlm" else None,
        })  # fmt: skip
    return rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--task", choices=sorted(TASKS), help="one seeded task (accuracy table)")
    which.add_argument("--suite", choices=["paper"], help="the paper's benchmarks as Table 1 and Figure 1")
    parser.add_argument("--size", default="60k", help=f"--task: one of {', '.join(SIZES)} or a number of tokens")
    parser.add_argument("--sizes", default="8k", help="--suite: comma-separated, 8k..256k (2^13..2^18) or tokens")
    parser.add_argument("--benchmarks", default="sniah,oolong,oolong_pairs,codeqa", help="--suite: which ones")
    parser.add_argument("--items", type=int, default=None, help="seeded items (per size for --suite); 5, suite 2")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first item (default 0)")
    parser.add_argument("--model", default=os.environ.get("RLM_MODEL", "local"), help="default: RLM_MODEL or local")
    parser.add_argument("--recursive-model", default=None)
    parser.add_argument("--api-base", default=None)
    parser.add_argument("--methods", default=None, help="comma-separated: rlm, direct, dspy_rlm (+ rlm_no_sub "
                        "with --suite); default all")  # fmt: skip
    parser.add_argument("--max-iterations", type=int, default=8)
    parser.add_argument("--max-depth", type=int, default=5)
    parser.add_argument("--max-llm-calls", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=None, help="seconds per LM request (default: the "
                        "library's, 900 for the bundled model, which answers late when shared, else 120)")  # fmt: skip
    parser.add_argument("--window", type=int, default=16384, help="the model's window in tokens, for direct")
    parser.add_argument("--answer-tokens", type=int, default=256)
    parser.add_argument("--json", metavar="FILE", help="also write every outcome as JSON")
    parser.add_argument("--plot", metavar="PNG", help="--suite: write score against context length (Figure 1)")
    parser.add_argument("--history-dir", metavar="DIR", help="save each RLM item's LM-call history here")
    parser.add_argument("--verbose", "-v", action="store_true")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


def lms_for(args: argparse.Namespace) -> tuple[dspy.BaseLM, dspy.BaseLM]:
    """The model for direct prompting (answers in a few tokens) and for dspy.RLM (writes code and
    reasoning, so it gets the model's own reply limit, as our RLM does)."""
    settings = {"api_base": args.api_base, "timeout": args.timeout}
    return build_lm(args.model, max_tokens=args.answer_tokens, **settings), build_lm(args.model, **settings)


def run(args: argparse.Namespace) -> int:
    # LiteLLM's bundled price table, not a download at import (these machines have no internet)
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    if args.timeout is None:  # the one RLM(...) would pick; direct prompting and dspy.RLM get the same
        args.timeout = LOCAL_TIMEOUT_S if is_local_model(args.model) else DEFAULT_TIMEOUT_S
    if getattr(args, "suite", None):
        from rlm.benchmarks.suite import run_suite

        return run_suite(args)
    if args.items is None:
        args.items = 5
    methods = [m.strip() for m in (args.methods or "rlm,direct,dspy_rlm").split(",") if m.strip()]
    unknown = set(methods) - {"rlm", "direct", "dspy_rlm"}
    if unknown:
        print(f"unknown method(s) {', '.join(sorted(unknown))}: use rlm, direct, dspy_rlm", file=sys.stderr)
        return 2
    if args.size not in SIZES and not args.size.isdigit():
        print(f"unknown size {args.size!r}: use one of {', '.join(SIZES)} or a number of tokens", file=sys.stderr)
        return 2
    items = make_items(args.task, args.size, args.items, args.seed)
    needs_lm = set(methods) - {"rlm"}
    direct_lm = (
        build_lm(args.model, api_base=args.api_base, max_tokens=args.answer_tokens, timeout=args.timeout)
        if needs_lm
        else None
    )
    agent_lm = build_lm(args.model, api_base=args.api_base, timeout=args.timeout) if needs_lm else None
    outcomes: list[Outcome] = []
    for index, item in enumerate(items):
        for method in methods:
            if method == "rlm":
                outcome = run_rlm_with_cause(args, index, item, history_path(args, index))
            elif method == "direct":
                outcome = run_direct(args, index, item, direct_lm)
            else:
                outcome = run_dspy_rlm(args, index, item, agent_lm)
            outcomes.append(outcome)
            mark = "ok " if outcome.correct else "BAD"
            print(f"[{mark}] item {index} {method:>9}: {outcome.answer[:60]!r} (expected {outcome.expected}) "
                  f"{outcome.wall_s:.1f}s {outcome.note}", file=sys.stderr, flush=True)  # fmt: skip
    rows = summarise(outcomes)
    print(f"\ntask={args.task} size={args.size} items={args.items} seed={args.seed} model={args.model}")
    print(f"{'method':>9} {'correct':>8} {'LM calls':>9} {'tokens in':>10} {'tokens out':>11} {'cost $':>9} "
          f"{'mean s':>7} {'max s':>7} {'FINAL by model':>15}")  # fmt: skip
    for r in rows:
        cost = "n/a" if r["cost"] is None else f"{r['cost']:.4f}"
        final = "" if r["final_by_model"] is None else f"{r['final_by_model']}/{r['items']}"
        print(f"{r['method']:>9} {r['correct']:>3}/{r['items']:<4} {r['llm_calls']:>9} {r['prompt_tokens']:>10} "
              f"{r['completion_tokens']:>11} {cost:>9} {r['mean_wall_s']:>7} {r['max_wall_s']:>7} "
              f"{final:>15}")  # fmt: skip
    causes = count_causes([o.extra["cause"] for o in outcomes if "cause" in o.extra])
    if any(causes.values()):
        listed = ", ".join(f"{cause} {n}" for cause, n in causes.items() if n)
        print(f"why RLM answers were wrong (rules in rlm/benchmarks/failures.py): {listed}")
    report = {"args": vars(args), "summary": rows, "failures": causes, "outcomes": [asdict(o) for o in outcomes]}
    print(json.dumps({"summary": rows}))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(report, out, indent=2)
    return 0
