"""Demos from successful runs, trimmed to their key turns, and what they cost in prompt tokens.

A bootstrapped demo is the root's whole trajectory (task, turns, final reply), as `ReplAdapter`
renders it. A small model's window is short, so turns that failed (errors, refused answers,
repeats, no code) are dropped, long observations keep their head and tail, and only the last turns stay.
Called by `rlm.optimize.compile`; `prompt_cost` is reported by `rlm optimize` and the program file.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dspy

from rlm.engine.result import StepRecord
from rlm.engine.step import render_messages

CHARS_PER_TOKEN = 4  # the engine's own estimate (rlm.benchmarks.tasks)

# A FINAL written in a step that did not end the run: the engine refused it (a guess, a misfit).
_REFUSED_FINAL = re.compile(r"\bFINAL(?:_VAR)?\s*\(")


@dataclass(frozen=True)
class DemoShape:
    """How long a demo may be: turns kept before the final reply, and characters per observation."""

    max_turns: int = 2
    observation_chars: int = 600
    context_info_chars: int = 900


def demo_from_trace(
    trace: Sequence[tuple[Any, dict[str, Any], Any]], query: str, steps: Sequence[StepRecord], shape: DemoShape
) -> dspy.Example:
    """The demo of a successful run: its root's last step (whose history is the whole trajectory), trimmed.

    `steps`: the run's trajectory, whose records say which turns failed (history[i] is steps[i]).
    """
    root_calls = [(inputs, outputs) for _, inputs, outputs in trace if inputs.get("query") == query]
    if not root_calls:
        raise ValueError("the run's trace has no step of its root: nothing to make a demo of")
    inputs, outputs = root_calls[-1]
    return dspy.Example(
        augmented=True,
        query=inputs["query"],
        context_info=_cut(str(inputs.get("context_info", "")), shape.context_info_chars),
        history=key_turns(inputs.get("history") or [], steps, shape),
        reply=str(outputs["reply"]),
    )


def key_turns(history: Sequence[dict[str, str]], steps: Sequence[StepRecord], shape: DemoShape) -> list[dict[str, str]]:
    """The turns worth showing: failed ones dropped, the last `max_turns` kept, observations cut.

    A turn failed when its code raised, it had no code, it ran code an earlier turn ran, or it
    wrote a FINAL that was refused (any FINAL before the last step was).
    """
    useful, seen_code = [], set()
    for turn, step in zip(history, steps, strict=False):
        code = " ".join(step.code.split())
        failed = step.error is not None or not code or code in seen_code or _REFUSED_FINAL.search(step.reply)
        seen_code.add(code)
        if not failed:
            useful.append(turn)
    kept = useful[-shape.max_turns :] if shape.max_turns else []
    return [
        {"reply": turn["reply"], "observation": _cut(turn["observation"], shape.observation_chars)} for turn in kept
    ]


def prompt_cost(instructions: str, demos: Sequence[Any]) -> int:
    """Estimated prompt tokens the demos add to every step of every run."""
    probe = {"query": "q", "context_info": "c", "history": []}
    bare = render_messages(instructions, [], probe)
    full = render_messages(instructions, [dict(demo) for demo in demos], probe)
    extra = sum(len(m["content"]) for m in full) - sum(len(m["content"]) for m in bare)
    return extra // CHARS_PER_TOKEN


def _cut(text: str, limit: int) -> str:
    """Head and tail of `text` within `limit` characters; the tail holds the step line."""
    if len(text) <= limit:
        return text
    tail = min(200, limit // 3)
    return f"{text[: limit - tail - 7].rstrip()}\n[...]\n{text[-tail:].lstrip()}"
