"""Runs inside a clean virtual environment holding only the installed wheel (see check_wheel.sh).

The main job's import path and one whole run through the installed package: the example's imports,
a scripted model (no network, no key), the sandbox's worker started from site-packages, the graph
page read from the package's data, and the install hint for the extra that is not installed.
Usage: python wheel_smoke.py path/to/examples/local_model.py
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
import warnings
from pathlib import Path

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import rlm
conflicts = [str(w.message) for w in caught if type(w.message).__name__ == "PackageConflictWarning"]
assert not conflicts, conflicts

import rlm.cli.main  # noqa: E402  (the `rlm` command's module)
from rlm import RLM, RLMError  # noqa: E402
from rlm.testing import scripted_lm  # noqa: E402

assert Path(rlm.__file__).parent.parent.name == "site-packages", f"rlm imported from {rlm.__file__}"

spec = importlib.util.spec_from_file_location("local_model_example", sys.argv[1])
assert spec and spec.loader
example = importlib.util.module_from_spec(spec)
spec.loader.exec_module(example)  # its imports; main() runs only as a script
log, code = example.make_log()

lm, _ = scripted_lm(
    [
        "```python\nprint(len(context))\n```",
        "```python\nFINAL(context.split('recovery code is ')[1].split()[0])\n```",
    ]
)
model = RLM(model=lm, enable_graph_tracking=True, max_iterations=4)
answer = model.completion("What is the recovery code in the WARN line?", log)
assert answer == code, (answer, code)

with tempfile.TemporaryDirectory() as folder:
    page = Path(folder) / "graph.html"
    model.save_graph(page)
    assert "<html" in page.read_text(encoding="utf-8").lower()

    # Without the [local] extra, RLM(model="local") says which extra to install, and how.
    os.environ.update({"RLM_CACHE_DIR": folder, "RLM_LOCAL_PORT": "1"})  # port 1: never a running server
    try:
        RLM(model="local").completion("q", "context")
    except RLMError as exc:
        assert 'pip install -e ".[local]"' in str(exc) and "llama-cpp-python" in str(exc), exc
    else:
        raise AssertionError("RLM(model='local') ran without the [local] extra")

print(f"wheel smoke: answered {answer!r} from {Path(rlm.__file__).parent}")
