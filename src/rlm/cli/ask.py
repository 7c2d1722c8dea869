"""`rlm ask QUESTION --context PATH...`: one question about files, folders or stdin."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from rlm.cli.common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_NO_ANSWER,
    EXIT_OK,
    EXIT_USAGE,
    build_rlm,
    finish_label,
    for_the_cli,
    is_user_fixable,
    no_answer_line,
)


def run(args: argparse.Namespace) -> int:
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
        print(f"rlm: {for_the_cli(exc)}", file=sys.stderr)
        return EXIT_USAGE
    try:
        output = parse_output_type(args.output) if args.output else None
        result = rlm.run(args.question, context, output=output)
    except RLMError as exc:
        print(f"rlm: {type(exc).__name__}: {for_the_cli(exc)}", file=sys.stderr)
        return EXIT_USAGE if is_user_fixable(exc) else EXIT_FAILED
    except KeyboardInterrupt:
        written = [name for name in (args.history, args.graph) if name]
        saved = f"; wrote {' and '.join(written)}" if written else ""
        print(f"rlm: interrupted after {len(finished_steps)} finished steps{saved}", file=sys.stderr)
        return EXIT_INTERRUPTED
    missing = no_answer_line(result, rlm.config.max_iterations)
    if args.json:  # the record either way (its finish_reason says why); the exit code says whether it answered
        data = result.to_dict()
        if output is not None:
            data["value"] = _jsonable(result.value)
        print(json.dumps(data, indent=2, ensure_ascii=False))
    elif output is not None and result.value is not None:
        print(json.dumps(_jsonable(result.value), ensure_ascii=False))
    elif output is not None:  # scripts expect the typed value: prose on stdout would mislead them
        print(missing or f"rlm: no answer fitted --output {args.output} ({result.finish_reason}); the last answer "
              f"was: {result.answer}", file=sys.stderr)  # fmt: skip
        return EXIT_NO_ANSWER
    elif missing:  # nothing on stdout: an empty line would read as an empty answer
        print(missing, file=sys.stderr)
    else:
        print(result.answer)
    if args.verbose and not args.json:
        cost = "unknown" if result.cost is None else f"${result.cost:.4f}"
        print(
            f"[{finish_label(result)}; {result.iterations} steps; {result.llm_calls} LM calls; "
            f"{result.prompt_tokens}+{result.completion_tokens} tokens; cost {cost}; {result.wall_time_s:.1f} s]",
            file=sys.stderr,
        )
    if missing or (output is not None and result.value is None):
        return EXIT_NO_ANSWER
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
    from rlm.engine.answer_types import to_json_data

    return to_json_data(value)
