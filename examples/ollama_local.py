"""A model served by Ollama on this machine: no key needed.

ollama pull qwen2.5-coder:7b && python examples/ollama_local.py
(RLM_MODEL=ollama/<name>; RLM_API_BASE if Ollama is not on http://localhost:11434)
"""

from __future__ import annotations

import sys

from common import model_settings

from rlm import RLM, ProviderError, RLMError

OLLAMA_DEFAULT_BASE = "http://localhost:11434"


def main() -> int:
    settings = model_settings("ollama/qwen2.5-coder:7b")
    text = "\n".join(f"line {i}: {'needle' if i == 4242 else 'hay'}" for i in range(10_000))
    try:
        rlm = RLM(**settings, max_iterations=8, temperature=0)
        print(rlm.completion("On which line number is the word 'needle'?", text))
    except ProviderError as exc:
        if "connect" not in str(exc).lower():
            raise
        model = settings["model"].split("/", 1)[-1]
        print(f"Nothing answers at {settings['api_base'] or OLLAMA_DEFAULT_BASE}: run `ollama serve` and "
              f"`ollama pull {model}`, or set RLM_API_BASE to where Ollama listens.", file=sys.stderr)  # fmt: skip
        return 2
    except RLMError as exc:  # a wrong model name, a sandbox that cannot start: one line, not a traceback
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
