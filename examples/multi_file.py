"""Several documents at once: pass a dict of name -> text (or a list).

python examples/multi_file.py [FOLDER]     # default: this repository's src/rlm/engine
"""

from __future__ import annotations

import sys
from pathlib import Path

from common import exit_for_missing_key, model_settings

from rlm import RLM, APIKeyNotFoundError

if __name__ == "__main__":
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "src/rlm/engine"
    documents = {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*.py"))}
    try:
        rlm = RLM(**model_settings(), max_iterations=10)
    except APIKeyNotFoundError as exc:
        exit_for_missing_key(exc)
    print(rlm.completion("Which file defines the REPL loop of one node, and what does it yield?", documents))
