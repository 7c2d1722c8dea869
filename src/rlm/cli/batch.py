"""`rlm batch items.jsonl --out results.jsonl [--ray [ADDRESS]]`: many questions, resumable, local or on Ray.

`add_arguments` fills the subcommand's parser (registered by cli/main.py); `run` executes it.
Importing this module stays light: DSPy and Ray load only when the batch runs.
"""

from __future__ import annotations

import argparse
import sys

from rlm.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, SANDBOX_HELP


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("items", help="items file: JSONL (or Parquet) with id, query and a context per item")
    parser.add_argument("--out", "-o", required=True, help="results JSONL; ids already in it are skipped")
    parser.add_argument("--model", "-m", default=None, help="LiteLLM model name, or 'local' (as for `rlm ask`)")
    parser.add_argument("--recursive-model", default=None, help="model for sub-calls and child RLMs")
    parser.add_argument("--api-base", default=None, help="endpoint of an OpenAI-compatible server")
    parser.add_argument("--sandbox", default=None, help=SANDBOX_HELP)
    parser.add_argument("--max-depth", type=int, default=None, help="depth of each item's RLM tree")
    parser.add_argument("--max-iterations", type=int, default=None, help="steps per node")
    parser.add_argument("--max-llm-calls", type=int, default=None, help="LM calls per item (items may set their own)")
    parser.add_argument("--program", metavar="FILE", help="a program compiled by `rlm optimize`, for every item")
    parser.add_argument(
        "--concurrency", "-j", type=int, default=None, help="items at once (default 8; on Ray: CPUs / cpus per item)"
    )
    parser.add_argument(
        "--ray",
        nargs="?",
        const="auto",
        default=None,
        metavar="ADDRESS",
        help="run items as Ray tasks: on RAY_ADDRESS or a new local cluster, or on the cluster at ADDRESS",
    )
    parser.add_argument("--ray-cpus-per-item", type=float, default=0.5, help="Ray CPUs one item reserves (0.5)")
    parser.add_argument("--retry-failed", action="store_true", help="run again the ids whose last row failed")
    parser.add_argument("--budget-calls", type=int, default=None, help="LM calls for the whole batch")
    parser.add_argument("--budget-tokens", type=int, default=None, help="tokens for the whole batch")
    parser.add_argument("--budget-usd", type=float, default=None, help="USD for the whole batch")
    parser.add_argument("--item-timeout", type=float, default=None, help="seconds one item may take")
    parser.add_argument("--history-dir", metavar="DIR", help="write each item's LM calls to DIR/<id>.json")
    parser.add_argument("--graph-dir", metavar="DIR", help="write each item's call graph to DIR/<id>.json")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress line")


def run(args: argparse.Namespace) -> int:
    from rlm.batch import batch, load_results
    from rlm.batch.progress import summary_table
    from rlm.cli.common import chosen_model, for_the_cli
    from rlm.errors import RLMError

    optional = {
        "recursive_model": args.recursive_model,
        "api_base": args.api_base,
        "sandbox": args.sandbox,
        "max_depth": args.max_depth,
        "max_iterations": args.max_iterations,
        "max_llm_calls": args.max_llm_calls,
        "program": args.program,
    }
    try:
        results = batch(
            args.items,
            out=args.out,
            concurrency=args.concurrency,
            ray=args.ray,
            retry_failed=args.retry_failed,
            budget_calls=args.budget_calls,
            budget_tokens=args.budget_tokens,
            budget_usd=args.budget_usd,
            item_timeout=args.item_timeout,
            history_dir=args.history_dir,
            graph_dir=args.graph_dir,
            ray_cpus_per_item=args.ray_cpus_per_item,
            progress=not args.quiet,
            model=chosen_model(args.model),
            **{k: v for k, v in optional.items() if v is not None},
        )
        failed = sum(not result.ok for result in results)
    except RLMError as exc:
        print(f"rlm: {for_the_cli(exc, 'batch')}", file=sys.stderr)
        return EXIT_USAGE
    stats = results.stats
    notes = [f"{stats.finished} run now, {stats.skipped} already in {args.out}"]
    if stats.not_started:
        notes.append(f"budget spent ({results.budget.describe()}): {stats.not_started} items not started")
    if stats.context_puts:
        notes.append(f"{stats.context_puts} contexts in Ray's object store, fetched {stats.worker_context_loads} times")
    print(summary_table(load_results(args.out).values(), notes))
    return EXIT_FAILED if failed or stats.not_started else EXIT_OK
