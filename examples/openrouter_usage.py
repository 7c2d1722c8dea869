"""Any model on OpenRouter: RLM_MODEL=openrouter/<vendor>/<model>, key in OPENROUTER_API_KEY.

OPENROUTER_API_KEY=... python examples/openrouter_usage.py
"""

from __future__ import annotations

from common import exit_for_missing_key, model_settings

from rlm import RLM, APIKeyNotFoundError

if __name__ == "__main__":
    try:
        rlm = RLM(**model_settings("openrouter/openai/gpt-4o-mini"), max_iterations=8)
    except APIKeyNotFoundError as exc:
        exit_for_missing_key(exc)
    text = " ".join(f"Sentence {i} is about {'cats' if i % 5 else 'dogs'}." for i in range(5000))
    print(rlm.completion("Are more sentences about cats or about dogs?", text))
