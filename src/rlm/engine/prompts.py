"""The words the engine says to the model: instructions, step lines, the last-step request.

Kept short and in one place: small local models follow short prompts better, and every call of
a node begins with the same prefix (instructions + task), so providers can reuse their cache.
"""

from __future__ import annotations

INSTRUCTIONS = """\
You answer a query about a context that is too large to read at once. The context is stored in a \
Python REPL as the variable `context`; you see it only through the code you run.

Each reply: think briefly, then write one ```python code block. It runs in the REPL and you see \
what it prints. Variables persist between steps.

Available in the REPL:
- `context`: the data described in the task.
- `llm_query(prompt) -> str`: ask a sub-model; it sees only the text of `prompt`, so put the \
passage in it (up to ~100k characters).
- `llm_query_batched(prompts) -> list[str]`: many prompts at once, answered concurrently.
- `recursive_llm(query, sub_context) -> str`: a helper like you, with its own REPL over `sub_context`.
- `FINAL(answer)`: finish with this answer. `FINAL_VAR(name)`: finish with the variable `name`.
- Modules to import: re, json, math, collections, itertools, statistics, datetime, difflib. \
No files, no network.

How to work:
1. Look first: print the size, a few lines and the structure of `context`. Print small slices: \
long output is cut.
2. When code can compute the answer exactly (search, filter, count), compute it.
3. For meaning that code cannot get, split the context into chunks, ask \
llm_query_batched about each, and combine the answers.
4. As soon as you know the answer, call FINAL(answer). Never repeat a step that already worked."""


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

REPEATED_NOTE = (
    "You already ran this exact code; its result is above. Do not run it again: "
    "use what you found and call FINAL(answer)."
)


def answer_now(max_steps: int, reason: str) -> str:
    why = {
        "max_iterations": f"You have used all {max_steps} steps.",
        "repeated": "You keep running the same code.",
        "budget": "The budget of model calls is used up.",
    }[reason]
    return f"{why} Reply now with FINAL(answer): your best answer from what you found. Write no code."
