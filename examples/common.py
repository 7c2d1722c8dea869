"""Shared by the examples: which model to use, and a clear exit when its key is missing.

Every example reads RLM_MODEL (default below), RLM_RECURSIVE_MODEL and RLM_API_BASE, so the same
script runs against OpenAI, Anthropic, OpenRouter, Ollama, a local llama.cpp server, or the test
server that CI uses to keep the examples working.
"""

from __future__ import annotations

import os
import sys
from typing import Any, NoReturn


def model_settings(default_model: str = "gpt-4o-mini", default_recursive: str | None = None) -> dict[str, Any]:
    return {
        "model": os.environ.get("RLM_MODEL", default_model),
        "recursive_model": os.environ.get("RLM_RECURSIVE_MODEL", default_recursive),
        "api_base": os.environ.get("RLM_API_BASE"),
    }


def exit_for_missing_key(exc: Exception) -> NoReturn:
    print(f"{exc}\nSet the key (environment or ./.env), or choose another model with RLM_MODEL "
          "(e.g. RLM_MODEL=local for the bundled model).", file=sys.stderr)  # fmt: skip
    raise SystemExit(2)
