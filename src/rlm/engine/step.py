"""The action step: a DSPy signature and the adapter that speaks the paper's plain format.

The step is an ordinary `dspy.Predict`, so DSPy optimizers can tune its instructions and demos.
`ReplAdapter` renders it as plain chat (instructions, task, then reply/observation turns) and
takes the whole reply as the output: there is nothing to fail parsing, so DSPy never retries a
step in another format, and each call's messages begin with the previous call's messages.
"""

from __future__ import annotations

from typing import Any

import dspy

from rlm.engine import prompts


class RLMStep(dspy.Signature):
    __doc__ = prompts.INSTRUCTIONS

    query: str = dspy.InputField(desc="the question to answer")
    context_info: str = dspy.InputField(desc="a description of `context` and the step budget")
    history: list[dict[str, str]] = dspy.InputField(desc="earlier turns: reply and observation")
    reply: str = dspy.OutputField(desc="brief reasoning and one ```python block, or FINAL(answer)")


def render_messages(instructions: str, demos: list[dict[str, Any]], inputs: dict[str, Any]) -> list[dict[str, str]]:
    """The chat messages for one step: shared by the adapter and by event reporting."""
    messages = [{"role": "system", "content": instructions}]
    for demo in demos:
        if "query" in demo and "reply" in demo:
            # A demo is a solved task as the model lived it: the task, its earlier turns, the reply.
            task = prompts.first_message(demo["query"], demo.get("context_info", ""))
            messages.append({"role": "user", "content": task})
            for turn in demo.get("history") or []:
                messages.append({"role": "assistant", "content": str(turn["reply"])})
                messages.append({"role": "user", "content": str(turn["observation"])})
            messages.append({"role": "assistant", "content": str(demo["reply"])})
    messages.append({"role": "user", "content": prompts.first_message(inputs["query"], inputs["context_info"])})
    for turn in inputs.get("history") or []:
        messages.append({"role": "assistant", "content": turn["reply"]})
        messages.append({"role": "user", "content": turn["observation"]})
    return messages


class ReplAdapter(dspy.Adapter):
    """Plain-chat adapter for `RLMStep`: no field markers, the reply is taken verbatim."""

    def format(self, signature: type[dspy.Signature], demos: list[dict[str, Any]], inputs: dict[str, Any]):
        return render_messages(signature.instructions, demos, inputs)

    def parse(self, signature: type[dspy.Signature], completion: str) -> dict[str, Any]:
        return {"reply": completion or ""}
