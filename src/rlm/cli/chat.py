"""`rlm chat`: load a context once, then answer one question per line over an `rlm.session`.

Lines starting with "/" are commands: /reset, /history, /save FILE, /quit (end of input quits too).
Answers go to stdout; the prompt, progress and the one-line summary of each answer go to stderr.
/history also shows where the conversation was compacted into the model's summary.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from rlm.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    build_rlm,
    finish_label,
    for_the_cli,
    no_answer_line,
)
from rlm.terminal import file_safe

COMMANDS = "/reset (forget questions and variables), /history, /save FILE, /quit"
SUMMARY_SHOWN = 160  # characters of a compaction's summary that /history shows


def run(args: argparse.Namespace) -> int:
    from rlm import RLMError
    from rlm.context_files import load_context

    try:
        context, loaded = load_context(args.context, args.include, args.exclude, args.max_bytes)
        rlm = build_rlm(args)
        session = rlm.session(context, compact_at_tokens=getattr(args, "compact_at", None))
        max_iterations = rlm.config.max_iterations
    except RLMError as exc:
        print(f"rlm: {for_the_cli(exc, 'chat')}", file=sys.stderr)
        return EXIT_USAGE
    interactive = sys.stdin.isatty()
    print(f"rlm: {loaded.line()}; ask a question per line, or {COMMANDS}", file=sys.stderr)
    log: list[dict[str, Any]] = []
    with session:
        while True:
            try:
                line = input("rlm> " if interactive else "")
            except EOFError:
                return EXIT_OK
            except KeyboardInterrupt:
                print(file=sys.stderr)
                return EXIT_INTERRUPTED
            question = line.strip()
            if not question:
                continue
            if question.startswith("/"):
                if not _command(question, session, log):
                    return EXIT_OK
                continue
            compacted_before = len(session.compactions)
            try:
                result = session.run(question)
            except KeyboardInterrupt:
                # The sandbox may be mid-step: start the REPL afresh rather than talk to it mid-frame.
                session.reset()
                print("rlm: interrupted; the REPL was reset (earlier questions forgotten)", file=sys.stderr)
                continue
            except RLMError as exc:
                print(f"rlm: {type(exc).__name__}: {for_the_cli(exc, 'chat')}", file=sys.stderr)
                continue
            missing = no_answer_line(result, max_iterations)
            if missing:  # said, not printed as an empty answer; the chat goes on
                print(missing, file=sys.stderr, flush=True)
            else:
                print(result.answer, flush=True)
            compactions = [
                {key: getattr(c, key) for key in ("step", "turns_folded", "tokens_before", "tokens_after", "summary")}
                for c in session.compactions[compacted_before:]
            ]
            log.append({"question": question, **result.to_dict(), "compactions": compactions})
            cost = "unknown" if result.cost is None else f"${result.cost:.4f}"
            compacted = "; conversation compacted" if compactions else ""
            print(
                f"[{finish_label(result)}; {result.iterations} steps; {result.llm_calls} LM calls; cost {cost}; "
                f"{result.wall_time_s:.1f} s{compacted}]",
                file=sys.stderr,
            )


def _command(line: str, session: Any, log: list[dict[str, Any]]) -> bool:
    """Carry out a /command; False when the chat should end."""
    name, _, argument = line.partition(" ")
    if name in ("/quit", "/exit"):
        return False
    if name == "/reset":
        session.reset()
        log.clear()
        print("rlm: the REPL holds only `context` again; earlier questions are forgotten", file=sys.stderr)
    elif name == "/history":
        if not log:
            print("(no questions yet)")
        for number, entry in enumerate(log, 1):
            print(f"{number}. {entry['question']}\n   -> {entry['answer']}")
            for compaction in entry.get("compactions", []):
                print(f"   {_compaction_line(compaction)}")
    elif name == "/save":
        path = argument.strip()
        if not path:
            print("rlm: /save needs a file name, e.g. /save chat.json", file=sys.stderr)
            return True
        # Built whole before the file is opened (no half-written file), and written UTF-8-safe: a
        # question read from stdin with surrogateescape can hold a lone surrogate.
        text = file_safe(json.dumps(log, indent=2, ensure_ascii=False, default=str))
        try:
            with open(os.path.expanduser(path), "w", encoding="utf-8", errors="replace") as out:
                out.write(text)
        except OSError as exc:
            print(f"rlm: could not save to {path}: {exc.strerror or exc}", file=sys.stderr)
            return True
        print(f"rlm: saved {len(log)} answers with their usage and steps to {path}", file=sys.stderr)
    else:
        print(f"rlm: unknown command {name}; the commands are {COMMANDS}", file=sys.stderr)
    return True


def _compaction_line(compaction: dict[str, Any]) -> str:
    summary = " ".join(compaction["summary"].split())
    shown = summary if len(summary) <= SUMMARY_SHOWN else f"{summary[:SUMMARY_SHOWN]}..."
    return (
        f"[conversation compacted before step {compaction['step']}: {compaction['turns_folded']} turns, "
        f"~{compaction['tokens_before']:,} -> ~{compaction['tokens_after']:,} tokens; summary: {shown}]"
    )
