"""The words the engine says to the model: instructions, step lines, the last-step request.

Kept short and in one place: small local models follow short prompts better, and every call of
a node begins with the same prefix (instructions + task), so providers can reuse their cache.
"""

from __future__ import annotations

# No worked example: small models copy an example's wording, search words and shape of answer
# whatever their task is, and any concrete example resembles some task. The method is taught in
# general terms, and the task message says how to read this particular `context` (describe.py).
INSTRUCTIONS = """\
You answer a query about a context that is too large to read at once. The context is stored in a \
Python REPL as the variable `context`; you see it only through the code you run. The task message \
describes `context`: its type, its size, its parts and how to read them.

Each reply: one short sentence of thought, then one ```python code block, then stop. The block runs \
in the REPL and what it prints comes back to you in the next message; never write the output \
yourself. Variables persist between steps.

Available in the REPL:
- `context`: the data described in the task.
- `llm_query(prompt) -> str`: ask a sub-model. It sees ONLY the text of `prompt`, so the prompt must \
hold both the passage and the question, within the size the task states.
- `llm_query_batched(prompts) -> list[str]`: many prompts answered concurrently, answers in order.
- `recursive_llm(query, sub_context) -> str`: a helper like you, with its own REPL over `sub_context`, \
for a part that needs several steps of its own.
- `FINAL(answer)`: finish with this answer. `FINAL_VAR(name)`: finish with the variable `name`.
- Modules to import: re, json, math, collections, itertools, statistics, datetime, difflib. \
No files, no network.

How to work:
1. Start with code: print the size of `context` and a small sample of it, the way the task's \
description of it shows, to learn its format.
2. Then narrow it down with code over all of the context, never by reading it piece by piece: \
search it for one or two distinctive words of the query, not the whole question, or for the kind of \
value asked for (a list of the lines where re.search(pattern, line) matches), then parse, filter, \
count (collections.Counter) or compare what matches. Print small results, such as how many matched \
and the first few; long output is cut.
3. Read what your code printed. If it shows the answer, finish now: FINAL(x) with x the variable \
that holds the value your code computed, or FINAL of the value exactly as the output showed it. \
If a step failed or printed nothing useful, change the code instead of running it again.
4. Only when code cannot decide, because the answer needs reading or judgement, delegate: split \
the relevant text into chunks that fit a sub-call, ask llm_query_batched the same focused question \
about every chunk (each prompt holds the question and then its chunk), then combine the answers \
with code (count, add up, pick, join) and finish as in 3.
"""


def sub_model_line(prompt_chars: int, note: str = "") -> str:
    line = f"Each sub-call prompt may hold up to {prompt_chars:,} characters; a longer one is refused, so split it."
    return f"{line} {note}" if note else line


SLOW_SUB_MODEL_NOTE = (
    "Sub-model calls are slow here (about 30 seconds each): use code (re, string methods, counting) "
    "whenever it can find the answer, and print the lines you find."
)


# A code block's closing fence: a small model that goes on past it invents the block's output.
CODE_BLOCK_END = "\n```\n"


# Names no placeholder: a small model told "FINAL(answer)" writes exactly that, and `answer` is
# not a variable of its REPL.
FINISH_NOW = (
    "Finish now with FINAL( ) holding your best answer from what you found: the value an output "
    "showed, or the variable that holds it."
)


# Said after an output from the third step on: small models went on running code after an output answered the query
# unless the choice to finish is put to them where they read last. The second sentence because
# they then take "0 matches" of a search with the wrong words for the value asked for.
FINISH_OR_GO_ON = (
    "If an output above shows what the query asks for, finish with FINAL now; if not, write the next code. "
    "A search that matched nothing means: try other words, before you conclude it is absent."
)


def step_line(step: int, max_steps: int, judge_output: bool = False) -> str:
    """The line that opens a step; `judge_output` when the step before printed something and did
    not fail: only then is there an output to finish from (asked after nothing, models guess)."""
    if step >= max_steps:
        return f"Step {step} of {max_steps}: this is the last step. {FINISH_NOW}"
    if step == 1:
        return f"Step 1 of {max_steps}: write your first ```python block."
    if not judge_output or step == 2:  # step 1 looked at the format: its sample is no answer
        return f"Step {step} of {max_steps}."
    return f"Step {step} of {max_steps}. {FINISH_OR_GO_ON}"


def first_message(query: str, context_info: str) -> str:
    return f"Query: {query}\n\n{context_info}"


NOTHING_PRINTED = "(nothing printed)"


def observation(output: str, error: str | None, note: str, closing: str) -> str:
    """What the model reads after a step: output, error, a note, then the next step's line."""
    parts = [f"Output:\n{output.rstrip()}" if output.strip() else f"Output: {NOTHING_PRINTED}"]
    if error:
        parts.append(f"Error:\n{error}")
    if note:
        parts.append(note)
    parts.append(closing)
    return "\n\n".join(parts)


NO_CODE_NOTE = (
    "Your reply had no code to run and no FINAL(...). Write code to explore `context` in a block "
    "that opens with ```python, or give the answer with FINAL(...)."
)

COMMENTS_ONLY_NOTE = (
    "Your code block held only comments, so nothing ran. If an output above already shows the answer, "
    "call FINAL with it; if not, write code that searches `context`."
)

GUESS_NOTE = (
    "That answer was not accepted: no output of your code has shown it, so it is a guess. "
    "Compute it with code and finish with FINAL(variable), or first print the part of `context` that shows it."
)


def preview_guess_note(expression: str) -> str:
    """Said when a refused answer is in the task message's quote of `context`, not in an output."""
    return (
        "That answer was not accepted: only the task message's quote of `context` shows it, and a quote "
        f"is not an output of your code. Print that part with print({expression}) to check it, then call FINAL."
    )


# An empty FINAL reads as a finished run with nothing in it; it is no answer.
EMPTY_ANSWER_NOTE = (
    "That answer was not accepted: it is empty. Print the value you mean to give, check it is there, "
    "then call FINAL with it."
)

ENGINE_TEXT_NOTE = (
    "That answer was not accepted: it is the REPL's own text, not something found in `context`. "
    "Find the answer with code, then call FINAL(answer)."
)

EXTRA_BLOCKS_NOTE = "Only your first code block ran. Write one block per reply and wait for its output."


def repeated_note(failed: bool, printed: bool) -> str:
    """Said when the model runs code it ran before: what to do depends on how it went."""
    if failed:
        return "You ran this exact code before and it failed the same way. Read the error and change the code."
    if not printed:
        return "You ran this exact code before and it printed nothing both times. Change the code."
    return "You already ran this exact code; its result is above. Use that result: do not run it again."


# Text the engine itself writes into the conversation. An answer that carries it was read off
# our own messages, not found in `context`.
# Text of our messages (`Grounding.engine_text` lets it through when an output showed it: then
# `context` holds it), and text our host functions hand to the model's code, never an answer.
ENGINE_MARKERS = (NOTHING_PRINTED, "That answer was not accepted", "Step 1 of ")
NO_ANSWER_MARKER = "[no answer:"


def answer_now(max_steps: int, reason: str) -> str:
    why = {
        "max_iterations": f"You have used all {max_steps} steps.",
        "repeated": "You keep running the same code.",
        "budget": "The budget of model calls is used up.",
        "budget_tokens": "The run's token budget is used up.",
        "budget_cost": "The run's cost budget is used up.",
        "budget_time": "The run's time budget is used up.",
        "time": "The time for this task is used up.",
    }[reason]
    return f"{why} {FINISH_NOW} Write no other code."


# Why a child node ended without a last answer; its parent's code reads this in place of one.
UNFINISHED = {
    "budget": "the run's LM-call budget (max_llm_calls) ran out before this sub-task answered",
    "budget_tokens": "the run's token budget (max_tokens_total) ran out before this sub-task answered",
    "budget_cost": "the run's cost budget (max_cost_usd) ran out before this sub-task answered",
    "budget_time": "the run's time budget (max_time_s) ran out before this sub-task answered",
    "time": "the calling step's time (max_step_seconds) ran out before this sub-task answered",
    "no_answer": "the model's last reply gave no FINAL answer",
    "unfounded": "the model's last answer was never shown by any output of its code (a guess)",
}
