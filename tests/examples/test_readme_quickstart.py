"""README's Quick start runs as copied into a file (the bundled model's address pointed at a local server)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def quick_start_script() -> str:
    text = README.read_text()
    section = text[text.index("## Quick start") :]
    start = section.index("```python\n") + len("```python\n")
    return section[start : section.index("```\n", start)]


def responder(body):
    asked = " ".join(str(m.get("content")) for m in body["messages"])
    if "never arrived" in asked:
        code = "ids = [int(e.split()[1].rstrip(':')) for e in context if 'never' in e]\nprint(ids)\nFINAL(ids)"
        return f"```python\n{code}\n```"
    return "```python\nprint(len(context))\nFINAL(str(len(context)))\n```"


def test_quick_start_runs_as_copied(openai_server, tmp_path):
    server = openai_server(responder)
    script = tmp_path / "quick_start.py"
    script.write_text(quick_start_script())
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and not k.startswith("RLM_")}
    env.update(RLM_LOCAL_API_BASE=server.base_url, RLM_SANDBOX="restricted", LITELLM_LOCAL_MODEL_COST_MAP="True")
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert {request["model"] for request in server.requests} == {"local"}  # RLM(model="local"), no key
    assert result.stdout.splitlines()[-1] == "[1002, 1005, 1008, 1011]"
