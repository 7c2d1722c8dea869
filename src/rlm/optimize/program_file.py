"""The program file `rlm optimize` writes and `RLM(..., program=PATH)` reads.

JSON with a format marker and version, the model the program was compiled for, and the step
predictor's demos (and instructions, when the optimizer rewrote them). Errors name the file and
the fix; a program compiled for another model loads with a warning.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dspy

from rlm.errors import ConfigurationError
from rlm.terminal import file_safe
from rlm.utf8 import utf8_values

FORMAT = "rlm-program"
FORMAT_VERSION = 1
DEMO_FIELDS = ("query", "context_info", "history", "reply")


class ProgramFileError(ConfigurationError):
    """A program file is missing, unreadable, or not one this version of recursive-llm reads."""


class ProgramModelWarning(UserWarning):
    """A program compiled for one model is loaded for another: its demos may not suit it."""


@dataclass(frozen=True)
class Program:
    """What an optimizer made of the step predictor, and how."""

    model: str
    demos: tuple[dict[str, Any], ...]
    instructions: str | None = None  # None: the library's current instructions
    optimizer: str = "bootstrap"
    info: dict[str, Any] = field(default_factory=dict)  # trainset, scores, prompt cost: for people

    def apply(self, predictor: dspy.Predict) -> None:
        """Give `predictor` this program's demos (and instructions)."""
        predictor.demos = [dspy.Example(**demo) for demo in self.demos]
        if self.instructions is not None:
            predictor.signature = predictor.signature.with_instructions(self.instructions)

    @classmethod
    def of(
        cls, predictor: dspy.Predict, model: str, optimizer: str, baseline_instructions: str, **info: Any
    ) -> Program:
        instructions = predictor.signature.instructions
        return cls(
            model=model,
            demos=tuple({name: _plain(demo[name]) for name in DEMO_FIELDS if name in demo} for demo in predictor.demos),
            instructions=None if instructions == baseline_instructions else instructions,
            optimizer=optimizer,
            info=dict(info),
        )

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        data = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "model": self.model,
            "optimizer": self.optimizer,
            "instructions": self.instructions,
            "demos": list(self.demos),
            "info": self.info,
            "dependency_versions": {"dspy": dspy.__version__},
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(file_safe(json.dumps(data, indent=2, ensure_ascii=False)) + "\n", encoding="utf-8")
        return path


def read_program(path: str | Path) -> Program:
    """The program saved at `path`; ProgramFileError naming the file and the fix when it cannot be read."""
    path = Path(path)
    remake = f"create it with `rlm optimize --out {path}`"
    if not path.is_file():
        raise ProgramFileError(f"program file {str(path)!r} does not exist: check the path, or {remake}")
    try:
        # ValueError: JSON's own errors, and an integer past Python's digit limit; RecursionError: nesting
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise ProgramFileError(
            f"program file {str(path)!r} is not readable JSON ({type(exc).__name__}: {str(exc)[:200]}): {remake} again"
        ) from None
    # A "\ud800" escape reads as a lone surrogate: the file is a stranger's text like a provider's reply,
    # and one in a demo made every request of the RLM fail to encode.
    data = utf8_values(data)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ProgramFileError(
            f'{str(path)!r} is not an rlm program file (no "format": "{FORMAT}"): pass a file written by '
            "`rlm optimize` or rlm.optimize.optimize(...).save(path)"
        )
    version = data.get("version")
    if type(version) is not int or version != FORMAT_VERSION:  # `true` equals 1 but is no version
        raise ProgramFileError(
            f"program file {str(path)!r} has format version {version!r}; this recursive-llm reads version "
            f"{FORMAT_VERSION}: {remake} with this version"
        )
    demos = data.get("demos")
    instructions = data.get("instructions")
    if (
        not isinstance(data.get("model"), str)
        or not isinstance(demos, list)
        or not all(_is_demo(demo) for demo in demos)
        or not (instructions is None or isinstance(instructions, str))
    ):
        raise ProgramFileError(f"program file {str(path)!r} is damaged (model, demos or instructions): {remake} again")
    return Program(
        model=data["model"],
        demos=tuple(demos),
        instructions=instructions,
        optimizer=str(data.get("optimizer", "")),
        info=info if isinstance(info := data.get("info"), dict) else {},
    )


def load_program(path: str | Path, predictor: dspy.Predict, model: str) -> Program:
    """Read the program at `path` into `predictor`; warn when it was compiled for another model."""
    program = read_program(path)
    if program.model != model:
        warnings.warn(
            f"program file {str(path)!r} was compiled for model {program.model!r}, not {model!r}: its demos may "
            f"not suit this model; compile one for it with `rlm optimize --model {model} --out FILE`",
            ProgramModelWarning,
            stacklevel=3,
        )
    program.apply(predictor)
    return program


def model_name(lm: dspy.BaseLM) -> str:
    """The name a program records and is checked against: the LM's model ("openai/local" for "local")."""
    return str(getattr(lm, "model", None) or type(lm).__name__)


def _is_demo(demo: Any) -> bool:
    if not isinstance(demo, dict) or not isinstance(demo.get("query"), str) or not isinstance(demo.get("reply"), str):
        return False
    history = demo.get("history", [])
    return isinstance(history, list) and all(
        isinstance(turn, dict) and isinstance(turn.get("reply"), str) and isinstance(turn.get("observation"), str)
        for turn in history
    )


def _plain(value: Any) -> Any:
    """JSON-ready copy of a demo field (histories are lists of dicts of str)."""
    if isinstance(value, list):
        return [dict(turn) if isinstance(turn, dict) else turn for turn in value]
    return value
