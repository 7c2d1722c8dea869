"""Many questions at once: one question per module of this repository, plus two about its docs folder.

python examples/batch_over_repo.py [RESULTS.jsonl]     # default: batch_results.jsonl here

Results are appended to the JSONL file as each item finishes; run it again and the ids already there
are skipped. The same items as a file run with `rlm batch items.jsonl --out results.jsonl`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from common import exit_for_missing_key, model_settings

import rlm
from rlm import APIKeyNotFoundError

REPO = Path(__file__).resolve().parent.parent

if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("batch_results.jsonl")
    items = [
        {"id": str(path.relative_to(REPO)), "query": "What is this module for? Answer in one sentence.",
         "context_path": str(path), "max_iterations": 6}
        for path in sorted((REPO / "src/rlm/batch").glob("*.py"))
    ]  # fmt: skip
    items += [
        {"id": "docs:layers", "query": "Which layers does the architecture name?", "context_path": str(REPO / "docs")},
        {"id": "docs:tests", "query": "How do the tests avoid the network?", "context_path": str(REPO / "docs")},
    ]
    try:
        run = rlm.batch(items, out=out, concurrency=4, progress=True, **model_settings())
        for result in run:
            print(f"{result.id}: {result.answer if result.ok else f'{result.error_class}: {result.error}'}")
    except APIKeyNotFoundError as exc:
        exit_for_missing_key(exc)
    print(f"{run.stats.finished} answered now, {run.stats.skipped} already in {out}")
