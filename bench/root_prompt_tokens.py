"""Tokens sent to the root model in step 1 for contexts of 10k, 1M and 10M tokens; and the root
prompt across 10 questions of one session, with and without compaction.

The design promises the root prompt does not grow with the context. A session carries its root
conversation from question to question, so there it grows with the questions until compaction
replaces the older turns with the model's summary. The model is scripted (each question: one step
that prints 1,500 characters of the context, one that answers with computed code; a summary request
is answered with a short summary of the answers so far); tokens are counted with gpt-4o-mini's
tokenizer. Run:
    python -m bench.root_prompt_tokens             # both parts
    python -m bench.root_prompt_tokens --session   # the session part only
"""

from __future__ import annotations

import os
import re
import resource
import sys
import time

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from rlm import RLM
from rlm.testing import scripted_lm

SIZES_IN_TOKENS = (10_000, 1_000_000, 10_000_000)
LINE = "2024-03-01 12:00:00 INFO service=api user=4711 path=/v1/items status=200 ms=12\n"


def make_context(tokens: int) -> str:
    chars = tokens * 4  # the engine's own estimate; the exact ratio does not matter here
    return (LINE * (chars // len(LINE) + 1))[:chars]


def count_tokens(messages: list[dict[str, str]]) -> int:
    import litellm

    return int(litellm.token_counter(model="gpt-4o-mini", messages=messages))


SESSION_QUESTIONS = 10
COMPACT_AT_TOKENS = 3_000  # the "with compaction" run; "without" sets a limit no session reaches
NEVER = 10**9


def session_model(messages: list[dict[str, str]]) -> str:
    """Each question: print a slice, then answer with code; a summary request gets the answers so far."""
    from rlm.engine.conversation import SUMMARY_REQUEST

    text = "\n".join(m["content"] for m in messages)
    if SUMMARY_REQUEST in messages[-1]["content"]:
        answered = sorted(set(re.findall(r"Question (\d+)\?", text)), key=int)
        return "Summary: " + "; ".join(f"question {n} asked for slice {n}, answered with its length" for n in answered)
    number = int(re.findall(r"Question (\d+)\?", text)[-1])
    printed = messages[-1]["content"].startswith("Output:")
    if printed:
        return f"```python\nFINAL(len(part_{number}))\n```"
    return f"```python\npart_{number} = context[{number} * 1500:{number + 1} * 1500]\nprint(part_{number})\n```"


def session_rows(compact_at_tokens: int) -> tuple[list[tuple[int, int, int, int, int]], int]:
    """Per question: (step-1 tokens, largest step, all steps, compaction calls, their tokens); compactions."""
    lm, engine = scripted_lm(session_model)
    context = make_context(20_000)
    rows = []
    with RLM(model=lm).session(context, compact_at_tokens=compact_at_tokens) as session:
        for number in range(1, SESSION_QUESTIONS + 1):
            engine.calls.clear()
            session.completion(f"Question {number}? How long is slice {number}?")
            steps = [count_tokens(m) for m in engine.calls if not _asks_summary(m)]
            summaries = [count_tokens(m) for m in engine.calls if _asks_summary(m)]
            rows.append((steps[0], max(steps), sum(steps), len(summaries), sum(summaries)))
    return rows, len(session.compactions)


def _asks_summary(messages: list[dict[str, str]]) -> bool:
    from rlm.engine.conversation import SUMMARY_REQUEST

    return SUMMARY_REQUEST in messages[-1]["content"]


def session_main() -> None:
    from rlm.session import _engine_carries_conversations

    if not _engine_carries_conversations():
        print("the engine does not carry a session's conversation yet: nothing to compare")
        return
    without, _ = session_rows(NEVER)
    with_, compactions = session_rows(COMPACT_AT_TOKENS)
    print(f"root prompt tokens per session question (compact_at_tokens={COMPACT_AT_TOKENS:,} vs never)")
    print(
        f"{'question':>9} {'without: step 1':>16} {'largest':>8} {'with: step 1':>13} {'largest':>8} {'summaries':>10}"
    )
    for number, (plain, compacted) in enumerate(zip(without, with_, strict=True), 1):
        summaries = f"{compacted[3]} ({compacted[4]:,} t)" if compacted[3] else ""
        print(f"{number:>9} {plain[0]:>16,} {plain[1]:>8,} {compacted[0]:>13,} {compacted[1]:>8,} {summaries:>10}")
    sent_without = sum(r[2] for r in without)
    sent_with = sum(r[2] + r[4] for r in with_)
    print(
        f"root prompt tokens sent over the {SESSION_QUESTIONS} questions (every step; summary calls included): "
        f"{sent_without:,} without, {sent_with:,} with; {compactions} compactions"
    )


def main() -> None:
    if "--session" in sys.argv[1:]:
        session_main()
        return
    rows = []
    for size in SIZES_IN_TOKENS:
        context = make_context(size)
        lm, engine = scripted_lm(["```python\nFINAL(str(len(context)))\n```"])
        started = time.perf_counter()
        RLM(model=lm).completion("How many requests returned status 500?", context)
        elapsed = time.perf_counter() - started
        messages = engine.calls[0]
        rows.append((size, len(context), count_tokens(messages), sum(len(m["content"]) for m in messages), elapsed))
        del context
    base = rows[0][2]
    print(
        f"{'context tokens':>15} {'context chars':>14} {'step-1 tokens':>14} {'prompt chars':>13} {'vs 10k':>8} {'run s':>7}"
    )
    for size, chars, tokens, prompt_chars, elapsed in rows:
        print(
            f"{size:>15,} {chars:>14,} {tokens:>14,} {prompt_chars:>13,} {100 * (tokens - base) / base:>+7.2f}% {elapsed:>7.2f}"
        )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"host peak RSS: {peak_mb:.0f} MB (the sandbox worker holds its own copy)")
    print()
    session_main()


if __name__ == "__main__":
    main()
