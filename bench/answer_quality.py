"""Answer quality on held-out items of kinds the instructions were never shaped on.

    python -m bench.answer_quality --model local --size 8000 --out /tmp/aq.json

Runs each item through the public API (`RLM(...).run`) and prints, per item: right or wrong, how
the run ended, whether the accepted answer was *founded* (shown as a whole value by some code
output, or computed by code), how many sub-calls the model made, whether a reply repeated the old
worked example's wording, and whether library text leaked into the answer. The items: a most-frequent
label, a count with a date filter, a pair count (OOLONG-style), a join across two documents, and
two questions about standard-library source (a dict of files; answers derived with `ast`).
Seeds 9300+ are used nowhere else (no prompt was written while looking at them); `--seed` and
`--rounds` draw more items of each kind (`--seed 9400 --rounds 3`: seeds 9401-9405, 9409-9413, ...).
"""

from __future__ import annotations

import argparse
import ast
import json
import random
import re
import sysconfig
import time
from pathlib import Path

from rlm import RLM
from rlm.benchmarks.tasks import Item, multidoc, oolong

STDLIB_FILES = ["textwrap.py", "shlex.py", "fractions.py", "calendar.py", "csv.py", "heapq.py", "bisect.py",
                "colorsys.py", "fnmatch.py", "glob.py", "numbers.py", "queue.py", "sched.py", "string.py"]  # fmt: skip
# Wording of the worked example the instructions carried before this round.
OLD_EXAMPLE_MARKS = ("Look at the data first", "Find the matching lines with code", "The printed line holds")
LIBRARY_TEXT = ("(nothing printed)", "[no answer", "Output:", "Step ")


def stdlib_items(seed: int) -> list[Item]:
    rng = random.Random(seed)
    root = Path(sysconfig.get_paths()["stdlib"])
    names = rng.sample(STDLIB_FILES, 8)
    docs = {name: (root / name).read_text() for name in names}
    trees = {name: ast.parse(source) for name, source in docs.items()}
    counted = rng.choice(names)
    classes = sum(isinstance(node, ast.ClassDef) for node in trees[counted].body)
    owner = rng.choice([n for n in names if any(isinstance(d, ast.FunctionDef) for d in trees[n].body)])
    function = rng.choice([d.name for d in trees[owner].body if isinstance(d, ast.FunctionDef)])
    definers = [n for n in names if any(isinstance(d, ast.FunctionDef) and d.name == function for d in trees[n].body)]
    return [
        Item("codeqa", f"How many classes does {counted} define at its top level? Answer with a number.",
             docs, str(classes), "count_classes"),
        Item("codeqa", f"Which file defines a top-level function named {function}? Answer with the file name.",
             docs, definers[0], "find_definition"),
    ]  # fmt: skip


def held_out_items(size_tokens: int, seed: int = 9300) -> list[Item]:
    """One item of each kind, from seeds seed+1 .. seed+5 (seed a multiple of 4)."""
    if seed % 4:
        raise SystemExit(f"--seed must be a multiple of 4 (oolong's question kind follows seed % 4); got {seed}")
    # oolong's question kind rotates with seed % 4: +1 most frequent, +2 date filter, +3 pairs
    return [oolong(size_tokens, seed + 1), oolong(size_tokens, seed + 2), oolong(size_tokens, seed + 3),
            multidoc(size_tokens, seed + 4), *stdlib_items(seed + 5)]  # fmt: skip


def whole_value_shown(answer: str, outputs: list[str]) -> bool:
    value = answer.strip()
    if not value:
        return False
    pattern = re.compile(r"(?<![\w.,])" + re.escape(value) + r"(?![\w]|[.,]\d)")
    return any(pattern.search(text) for text in outputs)


def inspect(item: Item, result: object) -> dict[str, object]:
    trajectory = result.trajectory  # type: ignore[attr-defined]
    outputs = [step.output for step in trajectory]
    answer = result.answer  # type: ignore[attr-defined]
    last_code = trajectory[-1].code if trajectory else ""
    computed = bool(answer) and answer.strip() not in last_code and "FINAL" in last_code
    return {
        "kind": item.kind,
        "expected": item.answer,
        "answer": answer[:200],
        "correct": item.score(answer),
        "finish": result.finish_reason,  # type: ignore[attr-defined]
        "steps": result.iterations,  # type: ignore[attr-defined]
        "founded": whole_value_shown(answer, outputs) or computed,
        "sub_calls": sum(step.code.count("llm_query") + step.code.count("recursive_llm") for step in trajectory),
        "copied_example": any(mark in step.reply for step in trajectory for mark in OLD_EXAMPLE_MARKS),
        "library_text": any(mark in answer for mark in LIBRARY_TEXT),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="local")
    parser.add_argument("--size", type=int, default=8000, help="context size in tokens (default 8000)")
    parser.add_argument("--max-iterations", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=900, help="per LM call, s (a shared server queues calls)")
    parser.add_argument("--only", help="comma-separated kinds to run (e.g. to re-run items a server failure spoilt)")
    parser.add_argument("--out", help="write every row as JSON here")
    parser.add_argument("--seed", type=int, default=9300, help="a multiple of 4; round r uses seed + 8r + 1..5")
    parser.add_argument("--rounds", type=int, default=1, help="items per kind (default 1)")
    parser.add_argument("--history-dir", help="save each item's LM-call history here")
    args = parser.parse_args()
    rows = []
    kinds = set(args.only.split(",")) if args.only else None
    items = [item for r in range(args.rounds) for item in held_out_items(args.size, args.seed + 8 * r)]
    for index, item in enumerate(items):
        if kinds is not None and item.kind not in kinds:
            continue
        history = str(Path(args.history_dir) / f"{index:02d}-{item.kind}.json") if args.history_dir else None
        started = time.perf_counter()
        try:
            rlm = RLM(model=args.model, max_iterations=args.max_iterations, timeout=args.timeout,
                      history_output_path=history)  # fmt: skip
            row = inspect(item, rlm.run(item.query, item.context))
        except Exception as exc:  # a failed item is a wrong one, with its reason
            row = {"kind": item.kind, "expected": item.answer, "answer": "", "correct": False,
                   "finish": f"error: {type(exc).__name__}: {exc}"}  # fmt: skip
        row["wall_s"] = round(time.perf_counter() - started, 1)
        rows.append(row)
        print(json.dumps(row), flush=True)
    right = sum(bool(r["correct"]) for r in rows)
    founded = sum(bool(r.get("founded")) for r in rows)
    print(f"right {right}/{len(rows)}; founded answers {founded}/{len(rows)}; "
          f"items with sub-calls {sum(bool(r.get('sub_calls')) for r in rows)}; "
          f"copied the old example {sum(bool(r.get('copied_example')) for r in rows)}; "
          f"library text in answer {sum(bool(r.get('library_text')) for r in rows)}")  # fmt: skip
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
