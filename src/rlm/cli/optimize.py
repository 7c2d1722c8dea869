"""`rlm optimize --out program.json`: compile the RLM's step on generated training items and save it.

`add_arguments` fills the subcommand's parser (registered by cli/main.py); `run` executes it.
The saved file is read by `rlm ask/chat/batch --program FILE` and `RLM(..., program=FILE)`.
"""

from __future__ import annotations

import argparse
import json
import sys

from rlm.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, SANDBOX_HELP


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", "-o", required=True, metavar="FILE", help="where to write the program (JSON)")
    parser.add_argument("--model", "-m", default=None, help="LiteLLM model name, or 'local' (as for `rlm ask`)")
    parser.add_argument("--api-base", default=None, help="endpoint of an OpenAI-compatible server")
    parser.add_argument("--sandbox", default=None, help=SANDBOX_HELP)
    parser.add_argument(
        "--optimizer",
        default="bootstrap",
        choices=("bootstrap", "gepa"),
        help="bootstrap: demos from runs that earned their answer (default); gepa: instructions rewritten by "
        "reflection on the runs (needs many runs)",
    )
    parser.add_argument(
        "--tasks",
        default="needle,multidoc,oolong",
        help="training generators, comma-separated (counting questions are held out for evaluation)",
    )
    parser.add_argument("--items", type=int, default=6, help="training items (default 6)")
    parser.add_argument("--size", type=int, default=8000, help="tokens per training context (default 8000)")
    parser.add_argument("--seed", type=int, default=100, help="first generator seed (default 100)")
    parser.add_argument("--max-demos", type=int, default=2, help="demos to keep (default 2)")
    parser.add_argument("--max-turns", type=int, default=2, help="turns a demo keeps before its answer (default 2)")
    parser.add_argument(
        "--max-demo-tokens", type=int, default=None, help="prompt tokens the demos may add (default 2000)"
    )
    parser.add_argument("--max-iterations", type=int, default=6, help="steps per training run (default 6)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds per LM request (default: the library's, 900 for the local model; raise it for a busy server)",
    )
    parser.add_argument("--max-metric-calls", type=int, default=12, help="gepa: training runs it may make")
    parser.add_argument("--json", action="store_true", help="print the program's summary as JSON")


def run(args: argparse.Namespace) -> int:
    from rlm import RLM, RLMError
    from rlm.cli.common import chosen_model, for_the_cli
    from rlm.optimize import DEFAULT_MAX_DEMO_TOKENS, DemoShape, optimize, training_items

    def heard(example: object, score: float, why: str) -> None:
        task, kind, seed = (getattr(example, name) for name in ("task", "kind", "seed"))
        print(f"rlm: train {task}/{kind} seed {seed}: {'kept' if score else 'not kept'} — {why}", file=sys.stderr)

    try:
        rlm = RLM(
            model=chosen_model(args.model),
            api_base=args.api_base,
            sandbox=args.sandbox or "auto",
            max_iterations=args.max_iterations,
            **({} if args.timeout is None else {"timeout": args.timeout}),  # unset: RLM's own default per model
        )
        trainset = training_items(
            args.items, args.size, [task.strip() for task in args.tasks.split(",") if task.strip()], args.seed
        )
        program = optimize(
            rlm,
            trainset,
            optimizer=args.optimizer,
            max_demos=args.max_demos,
            demo_shape=DemoShape(max_turns=args.max_turns),
            max_demo_tokens=args.max_demo_tokens or DEFAULT_MAX_DEMO_TOKENS,
            max_metric_calls=args.max_metric_calls,
            on_item=heard,
        )
        path = program.save(args.out)
    except RLMError as exc:
        print(f"rlm: {for_the_cli(exc, 'optimize')}", file=sys.stderr)
        return EXIT_USAGE
    summary = {
        "path": str(path),
        "model": program.model,
        "optimizer": program.optimizer,
        "demos": len(program.demos),
        "instructions_changed": program.instructions is not None,
        "prompt_tokens_added": program.info.get("prompt_tokens_added"),
        "training_runs_kept": sum(run["score"] == 1.0 for run in program.info.get("runs", [])),
        "training_runs": len(program.info.get("runs", [])),
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"wrote {path}: {summary['demos']} demos from {summary['training_runs_kept']} of "
            f"{summary['training_runs']} training runs that earned their answer; about "
            f"{summary['prompt_tokens_added']} prompt tokens added to each step"
        )
    if not program.demos and program.instructions is None:
        print("rlm: no training run earned its answer, so the program is the unoptimized one", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK
