"""The words the engine says to the model: instructions, step lines, the last-step request.

Kept short and in one place: small local models follow short prompts better, and every call of
a node begins with the same prefix (instructions + task), so providers can reuse their cache.
"""

from __future__ import annotations

INSTRUCTIONS = """\
You answer a query about a context that is too large to read at once. The context is stored in a \
Python REPL as the variable `context`; you see it only through the code you run. Never guess: \
find the answer in `context` with code.

Each reply: one short sentence of thought, then one ```python code block, then stop. The block runs \
in the REPL and its printed output comes back to you in the next message; never write the output \
yourself. Variables persist between steps.

Available in the REPL:
- `context`: the data described in the task.
- `llm_query(prompt) -> str`: ask a sub-model. It sees ONLY the text of `prompt`, so put the passage \
in it, e.g. llm_query("Summarise: " + chunk), keeping each prompt within the size the task states.
- `llm_query_batched(prompts) -> list[str]`: many prompts at once, answered concurrently.
- `recursive_llm(query, sub_context) -> str`: a helper like you, with its own REPL over `sub_context`.
- `FINAL(answer)`: finish with this answer. `FINAL_VAR(name)`: finish with the variable `name`.
- Modules to import: re, json, math, collections, itertools, statistics, datetime, difflib. \
No files, no network.

How to work:
1. Look first: print len(context) and a short slice such as context[:300].
2. When code can find or compute the answer (re.search, re.findall, counting lines, filtering), \
do it with code. Print only small results: long output is cut.
3. For meaning that code cannot get, split the context into chunks, ask llm_query_batched about \
each chunk, and combine the answers.
4. As soon as you have the answer, call FINAL(answer) with the answer itself: the number you \
computed, or the exact value you read in the output. Never repeat a step that already worked.

Example, for another context:
Query: What is the order id of the refund that failed?
Reply: Look at the data first.
```python
print(len(context))
print(context[:300])
```
Reply: Find the matching lines with code and print them.
```python
hits = [line for line in context.splitlines() if "refund" in line and "failed" in line]
print(len(hits))
print(hits[:5])
```
(The REPL printed 1 and the line '2024-05-02 refund failed for order 88172'.)
Reply: The printed line holds the answer, so I finish with it.
```python
FINAL("88172")
```
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


def step_line(step: int, max_steps: int) -> str:
    if step >= max_steps:
        return f"Step {step} of {max_steps}: this is the last step. Call FINAL(answer) now."
    return f"Step {step} of {max_steps}."


def first_message(query: str, context_info: str) -> str:
    return f"Query: {query}\n\n{context_info}"


def observation(output: str, error: str | None, note: str, closing: str) -> str:
    """What the model reads after a step: output, error, a note, then the next step's line."""
    parts = [f"Output:\n{output.rstrip()}" if output.strip() else "Output: (nothing printed)"]
    if error:
        parts.append(f"Error:\n{error}")
    if note:
        parts.append(note)
    parts.append(closing)
    return "\n\n".join(parts)


NO_CODE_NOTE = (
    "Your reply had no ```python block and no FINAL(...). Write code to explore `context`, "
    "or give the answer with FINAL(answer)."
)

GUESS_NOTE = (
    "You wrote that answer before seeing it in any output, so it is a guess and was not accepted. "
    "Read the output above (or compute the answer with code), then call FINAL(answer)."
)

EXTRA_BLOCKS_NOTE = "Only your first code block ran. Write one block per reply and wait for its output."

REPEATED_NOTE = (
    "You already ran this exact code; its result is above. Do not run it again: "
    "use what you found and call FINAL(answer)."
)


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
    return f"{why} Reply now with FINAL(answer): your best answer from what you found. Write no code."


# Why a child node ended without a last answer; its parent's code reads this in place of one.
UNFINISHED = {
    "budget": "the run's LM-call budget (max_llm_calls) ran out before this sub-task answered",
    "budget_tokens": "the run's token budget (max_tokens_total) ran out before this sub-task answered",
    "budget_cost": "the run's cost budget (max_cost_usd) ran out before this sub-task answered",
    "budget_time": "the run's time budget (max_time_s) ran out before this sub-task answered",
    "time": "the calling step's time (max_step_seconds) ran out before this sub-task answered",
}
