"""`rlm` — ask questions of large files from a terminal, benchmark, read saved runs, serve the local model.

rlm ask "Which service failed most?" --context logs/ -v --history run.json --graph run.html
rlm view run.json
rlm bench --task counting --size 60k --items 5 --model gpt-5-mini
rlm bench --suite paper --model gpt-5-mini --sizes 8k,32k --items 2 --plot figure1.png
rlm serve-local
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import traceback

from rlm.cli.common import (
    ASK_EXIT_CODES,
    DEFAULT_MODEL_EPILOG,
    EXIT_BROKEN_PIPE,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    add_context_and_model_options,
)
from rlm.terminal import TerminalSafeStream


def build_parser(command: str | None = "bench") -> argparse.ArgumentParser:
    """The `rlm` parser; `bench`'s own options are added only when `command` is bench (they load DSPy)."""
    parser = argparse.ArgumentParser(
        prog="rlm",
        description="Recursive Language Models: ask questions of contexts far larger than a model's window.",
        epilog=DEFAULT_MODEL_EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ask = commands.add_parser(
        "ask",
        help="answer a question about files, a folder or stdin",
        description="Answer QUESTION about the given context with an RLM.",
        epilog=f"{DEFAULT_MODEL_EPILOG} {ASK_EXIT_CODES}",
    )
    ask.add_argument("question", help="the question to answer")
    add_context_and_model_options(ask)
    ask.add_argument("--graph", metavar="FILE", help="write the call graph (.html, .json or GraphML)")
    ask.add_argument("--history", metavar="FILE", help="write every LM call as JSON")
    ask.add_argument(
        "--output",
        metavar="TYPE",
        help="the type the answer must have: 'int', 'list[str]', 'dict[str, int]', or fields such as "
        "'count: int, names: list[str]'; the validated value is printed as JSON",
    )
    ask.add_argument("--json", action="store_true", help="print the answer with usage as JSON")
    ask.add_argument("--verbose", "-v", action="store_true", help="show the live call tree on stderr")

    chat = commands.add_parser(
        "chat",
        help="load a context once and ask it many questions",
        description="Load the context once, then answer one question per line; the REPL keeps what the model's "
        "code made. Commands: /reset (forget questions and variables), /history, /save FILE, /quit.",
        epilog=DEFAULT_MODEL_EPILOG,
    )
    add_context_and_model_options(chat)
    chat.add_argument("--verbose", "-v", action="store_true", help="show the live call tree on stderr")
    chat.add_argument(
        "--compact-at",
        type=int,
        metavar="TOKENS",
        help="estimated prompt tokens at which the conversation is compacted into the model's summary "
        "(default: 60%% of the model's window where known, else of 32,768)",
    )

    bench = commands.add_parser(
        "bench",
        help="RLM against direct prompting (and dspy.RLM) on seeded tasks, or the paper's suite",
        description="Run seeded, offline benchmark items with exact answers through RLM, direct prompting "
        "(the whole context in one prompt, cut to --window) and dspy.RLM; print accuracy, LM calls, "
        "tokens, cost and time per method. --suite paper runs S-NIAH, OOLONG, OOLONG-Pairs and CodeQA "
        "look-alikes (also through RLM without sub-calls) as the paper's Table 1 and Figure 1 (--plot), "
        "with a cause for every wrong RLM answer.",
    )
    if command == "bench":
        from rlm.benchmarks.harness import add_arguments

        add_arguments(bench)

    from rlm.cli.batch import add_arguments as add_batch_arguments

    add_batch_arguments(
        commands.add_parser(
            "batch",
            help="many questions from a JSONL file, resumable, locally or on Ray",
            description="Answer every item of ITEMS (JSONL or Parquet: id, query, context) and append one row per "
            "item to --out as it finishes; re-running skips ids already there.",
        )
    )

    from rlm.cli.optimize import add_arguments as add_optimize_arguments

    add_optimize_arguments(
        commands.add_parser(
            "optimize",
            help="compile the RLM's step with a DSPy optimizer on generated items; save the program",
            description="Run the RLM on generated training items (counting questions are held out for "
            "evaluation), keep the runs that earned their answer as demos (DSPy BootstrapFewShot) or let GEPA "
            "rewrite the instructions, and save the program for --program FILE / RLM(program=FILE).",
        )
    )

    view = commands.add_parser(
        "view",
        help="show a saved history, call graph, batch results or chat transcript",
        description="Show a file written by --history (every LM call), --graph (.json or GraphML: the call "
        "tree), `rlm batch --out` (results .jsonl: its summary table again) or `rlm chat`'s /save (each "
        "question and answer) in the terminal; --html turns a saved graph into the offline HTML page.",
    )
    view.add_argument(
        "file", help="a history .json, a graph .json / .graphml, batch results .jsonl, or a chat transcript .json"
    )
    view.add_argument("--detailed", "-d", action="store_true", help="history: also print messages and outputs")
    view.add_argument("--max-length", type=int, default=300, help="cut long texts to this many characters")
    view.add_argument("--html", metavar="OUT", help="graph: write the offline HTML view to OUT")

    serve = commands.add_parser(
        "serve-local",
        help="run the bundled local model's server until Ctrl-C",
        description="Serve the bundled local model (OpenAI-compatible) on 127.0.0.1, shared with `rlm ask` and "
        "RLM(model='local') in other processes; it stops when the last process using it ends.",
    )
    serve.add_argument("--port", type=int, default=None, help="port on 127.0.0.1 (default: RLM_LOCAL_PORT or 8080)")
    serve.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads for the model (default: RLM_LOCAL_THREADS, else half the cores, at most 8)",
    )
    serve.add_argument("--context-tokens", type=int, default=16384, help="the server's window (default 16384)")
    return parser


def _version() -> str:
    """The installed distribution's version, read from its metadata: `rlm/__init__.py` may be
    another project's (install_check warns of that), and `rlm --help` must work all the same."""
    from importlib.metadata import PackageNotFoundError, version

    from rlm.install_check import DISTRIBUTION

    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:  # run from a source tree, or installed under an older name
        pass
    try:
        from rlm import __version__
    except ImportError:
        return "(version unknown)"
    return str(__version__)


def bench(args: argparse.Namespace) -> int:
    from rlm.benchmarks.harness import run
    from rlm.errors import RLMError

    try:
        return run(args)
    except RLMError as exc:
        print(f"rlm: {exc}", file=sys.stderr)
        return EXIT_USAGE


def ask(args: argparse.Namespace) -> int:
    from rlm.cli.ask import run

    return run(args)


def serve_local(args: argparse.Namespace) -> int:
    from rlm.cli.serve import run

    return run(args)


def chat(args: argparse.Namespace) -> int:
    from rlm.cli.chat import run

    return run(args)


def batch(args: argparse.Namespace) -> int:
    from rlm.cli.batch import run

    return run(args)


def optimize(args: argparse.Namespace) -> int:
    from rlm.cli.optimize import run

    return run(args)


def view(args: argparse.Namespace) -> int:
    from rlm.cli.view import load_saved, print_chat, print_history, print_tree
    from rlm.errors import RLMError

    try:
        kind, data = load_saved(args.file)
    except RLMError as exc:
        print(f"rlm: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if kind == "batch":
        print(data)
        return EXIT_OK
    if kind in ("history", "chat") and args.html:
        what = "a history" if kind == "history" else "a chat transcript (/save)"
        print(f"rlm: --html needs a saved graph; this file is {what}", file=sys.stderr)
        return EXIT_USAGE
    # Shown whole or not at all: a file from elsewhere can hold fields of any type, which only the
    # printing meets.
    shown = io.StringIO()
    try:
        if kind == "history":
            print_history(data, args.detailed, args.max_length, shown)
        elif kind == "chat":
            print_chat(data, args.detailed, args.max_length, shown)
        else:
            print_tree(data, args.max_length, shown)
    except (TypeError, KeyError, ValueError, AttributeError, RecursionError, OverflowError) as exc:
        print(f"rlm: {args.file} was not written by rlm ({type(exc).__name__}: {exc})", file=sys.stderr)
        return EXIT_USAGE
    sys.stdout.write(shown.getvalue())
    if kind in ("history", "chat"):
        return EXIT_OK
    if args.html:
        from pathlib import Path

        from rlm.tracking.html_view import render_graph_html

        try:
            page = render_graph_html(data)
        except RecursionError:  # a call chain thousands deep, or a cycle: not a graph rlm wrote
            print(f"rlm: {args.file} was not written by rlm (its calls nest too deep to lay out)", file=sys.stderr)
            return EXIT_USAGE
        except (TypeError, ValueError, OverflowError) as exc:
            print(f"rlm: {args.file} was not written by rlm ({type(exc).__name__}: {exc})", file=sys.stderr)
            return EXIT_USAGE
        Path(args.html).write_text(page, encoding="utf-8", errors="replace")
        print(f"wrote {args.html}", file=sys.stderr)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    from rlm.install_check import warn_about_conflicts

    warn_about_conflicts()  # again here: another project's rlm/__init__.py, installed over ours, skips it
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv[0] if argv else None).parse_args(argv)
    handlers = {
        "ask": ask,
        "chat": chat,
        "bench": bench,
        "view": view,
        "serve-local": serve_local,
        "batch": batch,
        "optimize": optimize,
    }
    # Whatever the commands print may carry text from the model's code: never terminal controls.
    stdout, stderr = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = TerminalSafeStream(stdout), TerminalSafeStream(stderr)
    try:
        return handlers[args.command](args)
    except KeyboardInterrupt:  # Ctrl-C before or after the run itself: no traceback for it
        print("rlm: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader stopped reading (`rlm view run.json | head`): it has what it wanted. Point stdout
        # at /dev/null so that the interpreter's last flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except Exception:  # a bug's traceback may quote the model's text: print it through the filter too
        traceback.print_exc()
        return EXIT_FAILED
    finally:
        sys.stdout, sys.stderr = stdout, stderr  # main() called in-process (tests, scripts) leaves them as found


if __name__ == "__main__":
    sys.exit(main())
