"""Run the model's code in E2B cloud sandboxes: pip install -e ".[e2b]" in the clone, set E2B_API_KEY.

E2B_API_KEY=... python examples/e2b_usage.py
(sandbox="auto" picks E2B by itself when the key is set; RLM_SANDBOX=restricted overrides)
"""

from __future__ import annotations

import os

from common import exit_for_missing_key, model_settings

from rlm import RLM, APIKeyNotFoundError, SandboxError

if __name__ == "__main__":
    try:
        rlm = RLM(**model_settings(), sandbox=os.environ.get("RLM_SANDBOX", "e2b"), max_iterations=8)
    except APIKeyNotFoundError as exc:
        exit_for_missing_key(exc)
    except SandboxError as exc:
        raise SystemExit(f"{exc}") from None
    data = "\n".join(f"{i},{i * i % 97}" for i in range(20_000))
    print(rlm.completion("What is the largest value in the second column?", data))
