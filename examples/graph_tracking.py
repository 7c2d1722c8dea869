"""Track a run's call graph and LM-call history, and write the offline HTML view.

    python examples/graph_tracking.py            # uses RLM_MODEL (default gpt-4o-mini) and its key
    python examples/graph_tracking.py --scripted # no model: a scripted LM drives the real engine

Writes out/graph.html (open it in a browser), out/history.json, and prints the history.
"""

from __future__ import annotations

import os
import sys

from rlm import RLM, APIKeyNotFoundError

DOCUMENTS = {
    "orders.csv": "\n".join(f"{i},{'widget' if i % 3 else 'gadget'},{i * 7 % 50}" for i in range(400)),
    "notes.md": "# Notes\nGadgets ship from Lyon. Widgets ship from Porto.\n" * 20,
}
QUESTION = "How many gadget orders are there, and where do gadgets ship from?"


def scripted_models():
    """A scripted root and sub model, so the example runs with no key (it is not a real model)."""
    from rlm.testing import scripted_lm

    root, _ = scripted_lm(
        [
            "Look at both files.\n```python\nfor name, text in context.items():\n    print(name, len(text))\n```",
            "Count with code, ask about the notes.\n```python\n"
            "rows = [r.split(',') for r in context['orders.csv'].splitlines()]\n"
            "gadgets = sum(1 for r in rows if r[1] == 'gadget')\n"
            "where = recursive_llm('Where do gadgets ship from?', context['notes.md'])\n"
            "checks = llm_query_batched(['Is ' + str(gadgets) + ' plausible?', 'Is ' + where + ' a city?'])\n"
            "print(gadgets, where, checks)\n```",
            "```python\nanswer = f'{gadgets} gadget orders; they ship from {where}'\nFINAL_VAR('answer')\n```",
        ]
    )
    child_steps = [
        "```python\nimport re\nhits = re.findall(r'Gadgets ship from (\\w+)', context)\nprint(set(hits))\n```",
        "```python\nFINAL(hits[0])\n```",
    ]

    def sub_reply(messages):
        if messages[-1]["content"].startswith(("Query:", "Output")):  # a child RLM's own steps
            return child_steps[sum(1 for m in messages if m["role"] == "assistant")]
        return "ok"  # a plain llm_query

    sub, _ = scripted_lm(sub_reply, model="scripted/sub")
    return root, sub


def main() -> int:
    os.makedirs("out", exist_ok=True)
    api_base = None  # scripted models are LM objects: settings for named models do not apply
    if "--scripted" in sys.argv:
        model, recursive_model = scripted_models()
    else:
        model = os.environ.get("RLM_MODEL", "gpt-4o-mini")
        recursive_model = os.environ.get("RLM_RECURSIVE_MODEL")
        api_base = os.environ.get("RLM_API_BASE")
    try:
        rlm = RLM(
            model=model,
            recursive_model=recursive_model,
            api_base=api_base,
            graph_output_path="out/graph.html",
            history_output_path="out/history.json",
            verbose=True,
        )
    except APIKeyNotFoundError as exc:
        print(f"{exc}\nOr run with --scripted to see the graph of a scripted run.", file=sys.stderr)
        return 2
    result = rlm.run(QUESTION, DOCUMENTS)
    print(f"\nanswer: {result.answer}\n")
    rlm.print_history()
    print("\nwrote out/graph.html and out/history.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
