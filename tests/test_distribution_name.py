"""Every install hint names the distribution pyproject.toml builds (PyPI's `recursive-llm` is another
project), or the clone itself (`pip install -e ".[local]"`: the package is not on PyPI yet)."""

from __future__ import annotations

import re
from pathlib import Path

from rlm.install_check import DISTRIBUTION

ROOT = Path(__file__).resolve().parent.parent
HINT = re.compile(r"""pip install (?:-{1,2}[\w-]+ )*['"]?([A-Za-z0-9_.-]+)\[""")  # pip install [-e] 'NAME[extra]'


def test_the_install_check_knows_the_name_pyproject_builds():
    declared = re.search(r'^name = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.MULTILINE)
    assert declared is not None
    assert declared[1] == DISTRIBUTION == "recursive-llm-dspy"


def test_every_install_hint_with_an_extra_names_this_distribution():
    files = [ROOT / "README.md", *(ROOT / "docs").rglob("*.md")]
    files += [*(ROOT / "src").rglob("*.py"), *(ROOT / "examples").rglob("*.py")]
    hints = {
        (path.relative_to(ROOT).as_posix(), name)
        for path in files
        for name in HINT.findall(path.read_text(encoding="utf-8"))
        if name not in ("llama-cpp-python",)  # a dependency's own extra, named as such
    }

    assert hints, "no install hint found: the pattern no longer matches how hints are written"
    assert {(path, name) for path, name in hints if name not in (DISTRIBUTION, ".")} == set()
