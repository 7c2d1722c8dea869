"""A strong root model plans; a cheaper model answers the sub-calls.

RLM_MODEL=gpt-5 RLM_RECURSIVE_MODEL=gpt-5-mini python examples/two_models.py
"""

from __future__ import annotations

from common import exit_for_missing_key, model_settings

from rlm import RLM, APIKeyNotFoundError

REVIEWS = "\n".join(
    f"Review {i}: {'The battery died after a week.' if i % 4 == 0 else 'Great screen, fast delivery.'}"
    for i in range(400)
)

if __name__ == "__main__":
    try:
        rlm = RLM(**model_settings("gpt-5", "gpt-5-mini"), max_iterations=10)
    except APIKeyNotFoundError as exc:
        exit_for_missing_key(exc)
    result = rlm.run("What is the most common complaint, and in how many reviews does it appear?", REVIEWS)
    print(result.answer)
    for model, usage in result.usage.items():
        print(f"  {model}: {usage.calls} calls, {usage.prompt_tokens}+{usage.completion_tokens} tokens")
