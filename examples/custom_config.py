"""Every knob in one place: limits, sandbox, budgets, strict mode, tracking.

python examples/custom_config.py
"""

from __future__ import annotations

from common import exit_for_missing_key, model_settings

from rlm import RLM, APIKeyNotFoundError, MaxIterationsError

if __name__ == "__main__":
    try:
        rlm = RLM(
            **model_settings(),
            max_depth=2,              # root + one level of recursive_llm; deeper calls become plain sub-calls
            max_iterations=8,         # steps per node
            max_llm_calls=40,         # for the whole tree
            temperature=None,         # provider default
            timeout=60,               # seconds per LM request
            sandbox="restricted",     # or "auto" / "e2b"
            exec_timeout=10,          # seconds of the model's own code per step
            memory_limit_mb=512,      # sandbox memory beyond the context
            max_output_chars=3000,    # printed output returned per step
            max_concurrency=4,        # sub-calls in flight
            strict=True,              # raise instead of a last best-effort answer
            enable_history=True,
        )  # fmt: skip
    except APIKeyNotFoundError as exc:
        exit_for_missing_key(exc)
    numbers = "\n".join(str(n * 7 % 101) for n in range(5000))
    try:
        print(rlm.completion("What is the sum of all the numbers?", numbers))
    except MaxIterationsError as exc:
        print(f"gave up: {exc}")
    rlm.print_history()
