"""RLM as a DSPy module: compose it with other modules, use DSPy's LM configuration.

python examples/dspy_usage.py
"""

from __future__ import annotations

import dspy
from common import exit_for_missing_key, model_settings

from rlm import RLM, APIKeyNotFoundError, RLMConfig, RLMModule

LOG = "\n".join(f"{i:05d} {'ERROR disk full' if i % 97 == 0 else 'INFO ok'}" for i in range(10_000))


class Triage(dspy.Module):
    """Find the problem with an RLM, then write the ticket with an ordinary predictor."""

    def __init__(self, lm: dspy.BaseLM) -> None:
        super().__init__()
        self.find = RLMModule(RLMConfig(max_iterations=8), lm=lm)
        self.ticket = dspy.Predict("problem -> ticket_title")

    def forward(self, log: str) -> dspy.Prediction:
        problem = self.find(query="What error occurs, and how many times?", context=log).answer
        return self.ticket(problem=problem)


if __name__ == "__main__":
    try:
        lm = RLM(**model_settings()).lm  # the same model resolution (keys, aliases) as RLM(...)
    except APIKeyNotFoundError as exc:
        exit_for_missing_key(exc)
    with dspy.context(lm=lm):
        print(Triage(lm)(log=LOG).ticket_title)
