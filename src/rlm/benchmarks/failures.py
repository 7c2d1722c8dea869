"""Why an RLM answer was wrong: one cause per wrong item, read from its trajectory by explicit rules.

Called by the paper suite (`suite.py`) for every RLM item that scored below 1. The rules run in
this order and the first that holds names the cause:

1. library_text - the answer holds the engine's own words ("(nothing printed)", "[no answer: ...",
   a note or instruction of `rlm.engine.prompts`): our text became the answer.
2. sandbox_error - the run raised a SandboxError, or a step's error came from the sandbox itself
   (a worker lost or restarted), not from the model's Python.
3. timeout - the time budget or a step's time ran out, a step was stopped by its timeout, or the
   run failed on a timed-out request.
4. run_error - the run raised any other exception (e.g. the model server failed): not the model's.
5. refused_right_answer - an earlier step's FINAL(...) held a right answer, yet the run went on.
6. guessed - the engine refused the last answer as unfounded (finish reason "unfounded"), or the
   answer was written out literally in the last reply and no output of any step showed it as a
   whole value ("80" is not shown by "4,698,280").
7. out_of_steps - the run ended without FINAL: steps, repeats or a call/token/cost budget ran out.
8. misread_output - an output showed the gold answer as a whole value, but the model answered
   something else.
9. never_decomposed - no step called a sub-model (llm_query, llm_query_batched, recursive_llm)
   on a task too large to read in one window or one whose answer needs a judgment per line.
10. wrong_code - otherwise: the answer came from the model's own code, and the code was wrong.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from rlm.benchmarks.paper.item import CHARS_PER_TOKEN
from rlm.benchmarks.paper.scoring import mentions
from rlm.engine.parsing import extract_code, find_text_final, parse_code

CAUSES = (
    "library_text",
    "sandbox_error",
    "timeout",
    "run_error",
    "refused_right_answer",
    "guessed",
    "out_of_steps",
    "misread_output",
    "never_decomposed",
    "wrong_code",
)
SUBCALL_FUNCTIONS = ("llm_query", "llm_query_batched", "recursive_llm", "recursive_llm_batched")
_TIME_REASONS = {"budget_time", "time"}
_SANDBOX_SIGNS = ("sandboxerror", "worker was restarted", "worker died", "worker crashed", "sandbox worker")
# Engine text that must never be an answer, besides every sentence of `rlm.engine.prompts`
_FIXED_MARKERS = ("(nothing printed)", "[no answer:", "characters cut]", "Output:\n", "Step 1 of")


class Scored(Protocol):
    """An item: `paper.PaperItem`, or `tasks.Item` (its size is measured here; it needs no judgments)."""

    @property
    def answer(self) -> str: ...
    @property
    def context(self) -> Any: ...

    def score(self, prediction: str) -> float: ...


def _context_chars(item: Scored) -> int:
    measure = getattr(item, "context_chars", None)
    if callable(measure):
        return int(measure())
    context = item.context
    return len(context) if isinstance(context, str) else sum(len(str(v)) for v in dict(context).values())


@dataclass(frozen=True)
class Step:
    """What the classifier reads of one step (a `StepRecord`, or a dict of its fields)."""

    reply: str
    code: str
    output: str
    error: str | None


def steps_of(trajectory: Iterable[Any]) -> list[Step]:
    steps = []
    for s in trajectory:
        get = s.get if isinstance(s, dict) else lambda name, s=s: getattr(s, name, "")
        steps.append(Step(str(get("reply") or ""), str(get("code") or ""), str(get("output") or ""), get("error")))
    return steps


def library_markers() -> list[str]:
    """The engine's own phrases: fixed markers plus each sentence (20+ chars) of the prompts module's text."""
    from rlm.engine import prompts

    texts = [v for k, v in vars(prompts).items() if isinstance(v, str) and not k.startswith("__")]
    texts += [v for v in getattr(prompts, "UNFINISHED", {}).values() if isinstance(v, str)]
    sentences = {s.strip() for text in texts for s in re.split(r"(?<=[.:!?])\s+|\n", text)}
    return [*_FIXED_MARKERS, *sorted(s for s in sentences if len(s) >= 20)]


def final_literals(reply: str) -> list[str]:
    """The values written literally in a reply's FINAL(...): in its code (read with `ast`) and in its
    prose (as the engine reads a FINAL written as text). Numbers keep the characters written."""
    values = []
    code = extract_code(reply) or ""
    tree = parse_code(code) if code else None
    for node in ast.walk(tree) if tree is not None else ():
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "FINAL" and node.args:
            argument = node.args[0]
            if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                values.append(argument.value)
            elif isinstance(argument, ast.Constant | ast.UnaryOp) and _is_number(argument):
                values.append(ast.get_source_segment(code, argument) or "")
    in_prose = find_text_final(reply)
    if in_prose is not None and in_prose.kind == "FINAL":
        values.append(in_prose.literal)
    return values


def _is_number(node: ast.expr) -> bool:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        node = node.operand
    return isinstance(node, ast.Constant) and type(node.value) in (int, float)


def classify(
    item: Scored,
    answer: str,
    finish_reason: str,
    trajectory: Iterable[Any],
    error: str = "",
    window_tokens: int = 16384,
) -> str:
    """The cause of one wrong RLM answer (see the module's rules, applied in order)."""
    steps = steps_of(trajectory)
    answer = str(answer or "").strip()
    errors = [str(s.error) for s in steps if s.error]
    lowered_errors = " ".join(errors).lower()
    if answer and any(marker in answer for marker in library_markers()):
        return "library_text"
    if "SandboxError" in error or any(sign in lowered_errors for sign in _SANDBOX_SIGNS):
        return "sandbox_error"
    if finish_reason in _TIME_REASONS or "timeout" in error.lower() or "timed out" in error.lower():
        return "timeout"
    if errors and errors[-1].startswith("TimeoutError"):
        return "timeout"
    if error:
        return "run_error"
    if any(item.score(value) >= 0.99 for s in steps[:-1] for value in final_literals(s.reply)):
        return "refused_right_answer"
    if finish_reason == "unfounded":
        return "guessed"
    if finish_reason != "final":
        return "out_of_steps"
    outputs = [s.output for s in steps]
    last_reply = steps[-1].reply if steps else ""
    written = answer in final_literals(last_reply) or (answer and f"FINAL({answer})" in last_reply)
    if answer and written and len(answer) <= 100 and not any(mentions(out, answer) for out in outputs):
        return "guessed"
    gold = str(item.answer)
    if gold and "\n" not in gold and _an_output_shows(gold, outputs, item):
        return "misread_output"
    decomposed = any(re.search(rf"\b{fn}\s*\(", s.code) for s in steps for fn in SUBCALL_FUNCTIONS)
    too_large = _context_chars(item) > window_tokens * CHARS_PER_TOKEN
    if not decomposed and (too_large or getattr(item, "needs_meaning", False)):
        return "never_decomposed"
    return "wrong_code"


# A line copied from the context shows the gold only where the gold is rare in the context: a
# needle's number is, but a count of 12 is not shown by a sample line dated "May 12".
_RARE_IN_CONTEXT_LINES = 2


def _an_output_shows(gold: str, outputs: Sequence[str], item: Scored) -> bool:
    lines = [line for out in outputs for line in out.splitlines() if line.strip() and mentions(line, gold)]
    if not lines:
        return False
    context_lines = set(_context_text(item).splitlines())  # read once, only when some line names the gold
    if any(line not in context_lines for line in lines):
        return True  # a line the code computed
    return sum(mentions(line, gold) for line in context_lines) <= _RARE_IN_CONTEXT_LINES


def _context_text(item: Scored) -> str:
    context = item.context
    if isinstance(context, str):
        return context
    if isinstance(context, Mapping):
        return "\n".join(str(v) for v in context.values())
    return str(context)


def count_causes(causes: Sequence[str]) -> dict[str, int]:
    """Counts per cause, every cause listed (zeros included) in the rules' order."""
    counted = Counter(causes)
    return {cause: counted[cause] for cause in CAUSES}
