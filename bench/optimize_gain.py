"""Does the optimized program beat the unoptimized one? The same held-out items, in the same run, repeated.

    python -m bench.optimize_gain --model local --items 6 --repeats 2 --size 8000

Compiles a program on training items (rlm.optimize.training_items: needle, multidoc, oolong —
never the held-out counting shape or seeds), or takes one with --program; then runs the
unoptimized and the optimized RLM on held-out items, alternating which goes first, `--repeats`
times. Prints accuracy per repeat, the run-to-run spread, and whether the gain exceeds it. Nothing
here is tuned to the evaluation items.

--held-out counting (default): counting questions over labelled records (rlm.optimize.EVALUATION),
  close to the trained OOLONG filter question.
--held-out codeqa: questions about the standard library's source (rlm.optimize.CODE_EVALUATION),
  a shape no training task resembles.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import dspy

from rlm import RLM
from rlm.optimize import CODE_EVALUATION, EVALUATION, HeldOut, check_disjoint, optimize, read_program, training_items

HELD_OUT: dict[str, tuple[HeldOut, str]] = {"counting": (EVALUATION, "counting"), "codeqa": (CODE_EVALUATION, "codeqa")}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="local")
    parser.add_argument("--api-base", default=None)
    parser.add_argument("--held-out", choices=sorted(HELD_OUT), default="counting", help="the evaluation items' shape")
    parser.add_argument("--items", type=int, default=6, help="held-out items")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--size", type=int, default=8000, help="tokens per held-out context")
    parser.add_argument("--max-iterations", type=int, default=6)
    parser.add_argument("--timeout", type=float, default=900, help="seconds per LM request (a shared server queues)")
    parser.add_argument("--program", default=None, help="a compiled program; without it one is compiled first")
    parser.add_argument("--train-items", type=int, default=6)
    parser.add_argument("--train-size", type=int, default=8000)
    parser.add_argument("--max-demos", type=int, default=2)
    parser.add_argument(
        "--temperature",
        type=float,
        default=None,
        help="sampling temperature of the evaluation runs (default: the library's); above 0 the repeats "
        "sample different runs, so the spread measures the model's variance, not the server's replay",
    )
    parser.add_argument("--out", default="out/optimize_gain.json")
    parser.add_argument("--report", metavar="FILE", help="print the table of a saved (maybe unfinished) run and stop")
    return parser.parse_args()


def compile_program(args: argparse.Namespace, path: Path) -> Path:
    rlm = RLM(model=args.model, api_base=args.api_base, max_iterations=args.max_iterations, timeout=args.timeout)
    trainset = training_items(args.train_items, args.train_size)

    def heard(example: Any, score: float, why: str) -> None:
        print(f"  train {example.task}/{example.kind} seed {example.seed}: score {score:.0f} ({why})", flush=True)

    started = time.perf_counter()
    program = optimize(rlm, trainset, max_demos=args.max_demos, on_item=heard)
    program.save(path)
    print(
        f"compiled in {time.perf_counter() - started:.0f} s: {len(program.demos)} demos, "
        f"~{program.info['prompt_tokens_added']} prompt tokens added per step -> {path}",
        flush=True,
    )
    return path


def run_one(args: argparse.Namespace, program: Path | None, item: Any) -> dict[str, Any]:
    rlm = RLM(
        model=args.model,
        api_base=args.api_base,
        max_iterations=args.max_iterations,
        timeout=args.timeout,
        program=program,
        temperature=args.temperature,
    )
    started = time.perf_counter()
    try:
        result = rlm.run(item.query, item.context)
    except Exception as exc:  # a failed run is a wrong answer here, and said so
        return {"correct": False, "founded": False, "error": f"{type(exc).__name__}: {exc}", "wall_s": 0.0}
    correct = float(item.score(result.answer)) >= 1.0  # counting scores True/False, CodeQA 0.0-1.0
    return {
        "correct": correct,
        "founded": correct and result.finish_reason == "final",  # the optimizer's own metric (rlm.optimize.judge)
        "answer": result.answer[:80],
        "expected": item.answer,
        "finish_reason": result.finish_reason,
        "llm_calls": result.llm_calls,
        "prompt_tokens": result.prompt_tokens,
        "wall_s": round(time.perf_counter() - started, 1),
    }


def revision() -> str:
    """The git revision, or the one an exported tree records in REVISION (`git archive` has no .git)."""
    exported = Path(__file__).resolve().parent.parent / "REVISION"
    if exported.is_file():
        return exported.read_text().strip()
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "unknown"


def main() -> None:
    args = parse_args()
    if args.report:
        saved = json.loads(Path(args.report).read_text())
        print(f"{saved['command']}\n{saved['date']}, {saved['machine']}, revision {saved['revision']}")
        print_table(saved["runs"])
        return
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    program = Path(args.program) if args.program else compile_program(args, out.with_suffix(".program.json"))
    if not read_program(program).demos and read_program(program).instructions is None:
        raise SystemExit(f"{program}: no training run earned its answer, so there is no optimized program to compare")
    info = read_program(program).info
    held_out, task = HELD_OUT[args.held_out]
    # The program's own record of what it trained on must not touch the evaluation items.
    check_disjoint([dspy.Example(**example) for example in info.get("trainset", [])], held_out)
    seeds = list(held_out.seeds[: args.items])
    items = held_out.items(args.items, args.size, task)
    runs: list[dict[str, Any]] = []
    report = {
        "command": "python -m bench.optimize_gain "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None),
        "machine": f"{platform.node()} {platform.machine()} {platform.processor() or ''}".strip(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "revision": revision(),
        "program": str(program),
        "program_info": {k: info.get(k) for k in ("trainset", "runs", "prompt_tokens_added", "compile_seconds")},
        "runs": runs,
    }
    # Item by item (all repeats of both programs), so that a run stopped early still pairs them.
    for index, (item, seed) in enumerate(zip(items, seeds, strict=True)):
        for repeat in range(args.repeats):
            order = [("unoptimized", None), ("optimized", program)]
            if (index + repeat) % 2:
                order.reverse()  # neither program always runs first (server caches, load from others)
            for label, path in order:
                row = {
                    "program": label,
                    "repeat": repeat,
                    "item": index,
                    "seed": seed,
                    "kind": item.kind,
                    **run_one(args, path, item),
                }
                runs.append(row)
                print(json.dumps(row), flush=True)
                out.write_text(json.dumps(report, indent=2))
    print_table(runs)
    out.write_text(json.dumps(report, indent=2))


def print_table(runs: list[dict[str, Any]]) -> None:
    """The table of `runs`, its repeats and items read from the runs (a saved run's, with --report)."""
    items = len({r["item"] for r in runs})
    print(
        f"\n| program | repeat | correct / {items} | founded | LM calls (mean) | prompt tokens (mean) | wall s (mean) |"
    )
    print("|---|---|---|---|---|---|---|")
    accuracy: dict[str, list[float]] = {}
    for label in ("unoptimized", "optimized"):
        for repeat in sorted({r["repeat"] for r in runs}):
            rows = [r for r in runs if r["program"] == label and r["repeat"] == repeat]
            if not rows:
                continue
            correct = sum(r["correct"] for r in rows)
            correct_of = f"{correct} / {len(rows)}"
            accuracy.setdefault(label, []).append(correct / len(rows))
            calls, tokens, wall = (_mean(rows, key) for key in ("llm_calls", "prompt_tokens", "wall_s"))
            founded = sum(r["founded"] for r in rows)
            print(f"| {label} | {repeat + 1} | {correct_of} | {founded} | {calls:.1f} | {tokens:.0f} | {wall:.0f} |")
    spread = max((max(v) - min(v) for v in accuracy.values()), default=0.0)
    means = {label: sum(v) / len(v) for label, v in accuracy.items()}
    gain = means.get("optimized", 0.0) - means.get("unoptimized", 0.0)
    print(f"\nmean accuracy: unoptimized {means.get('unoptimized', 0):.2f}, optimized {means.get('optimized', 0):.2f}; "
          f"gain {gain:+.2f}; run-to-run spread (largest max-min over repeats) {spread:.2f}")  # fmt: skip
    failed = [r for r in runs if r.get("error")]
    if failed:  # a run the library or the server failed says nothing about the program
        print(f"no verdict: {len(failed)} of {len(runs)} runs failed with errors (first: {failed[0]['error'][:160]})")
        return
    verdict = "helps by more than the spread" if gain > spread else "does NOT help by more than the spread"
    print(f"verdict: the optimized program {verdict}")


def _mean(rows: list[dict[str, Any]], key: str) -> float:
    return sum(row.get(key, 0) or 0 for row in rows) / len(rows)


if __name__ == "__main__":
    main()
