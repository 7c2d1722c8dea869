"""A model served by Ollama on this machine: no key needed.

ollama pull qwen2.5-coder:7b && python examples/ollama_local.py
(RLM_MODEL=ollama/<name>; RLM_API_BASE if Ollama is not on http://localhost:11434)
"""

from __future__ import annotations

from common import model_settings

from rlm import RLM

if __name__ == "__main__":
    rlm = RLM(**model_settings("ollama/qwen2.5-coder:7b"), max_iterations=8, temperature=0)
    text = "\n".join(f"line {i}: {'needle' if i == 4242 else 'hay'}" for i in range(10_000))
    print(rlm.completion("On which line number is the word 'needle'?", text))
