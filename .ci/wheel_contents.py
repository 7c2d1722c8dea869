"""Check the built sdist and wheel against the source tree: every file of the `rlm` package (modules
and the data files the code reads, such as tracking/graph_page.html) is in both, under its name.

Usage: python .ci/wheel_contents.py DIST.tar.gz DIST.whl   (run from the repository's root)
"""

from __future__ import annotations

import re
import sys
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path


def package_files() -> set[str]:
    """`rlm/...` paths of the source tree's package files (bytecode caches aside)."""
    root = Path("src")
    return {
        path.relative_to(root).as_posix()
        for path in (root / "rlm").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }


def main(sdist: str, wheel: str) -> int:
    wanted = package_files()
    name = re.search(r'^name = "([^"]+)"', Path("pyproject.toml").read_text(), re.MULTILINE)[1]  # [project]'s
    problems = []

    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        dist_info = next(n.split("/", 1)[0] for n in names if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(archive.read(f"{dist_info}/METADATA").decode())
        entry_points = archive.read(f"{dist_info}/entry_points.txt").decode()
    problems += [f"wheel lacks {path}" for path in sorted(wanted - names)]
    problems += [f"wheel has {path}, not in src/" for path in sorted(n for n in names - wanted if n.startswith("rlm/"))]
    problems += [f"wheel has {path} outside rlm/" for path in sorted(n for n in names if not n.startswith(("rlm/", dist_info)))]
    if metadata["Name"] != name:
        problems.append(f"wheel's distribution name is {metadata['Name']!r}, pyproject says {name!r}")
    if "rlm = rlm.cli.main:main" not in entry_points:
        problems.append("wheel has no `rlm` command (rlm = rlm.cli.main:main)")

    with tarfile.open(sdist) as archive:
        top = archive.getnames()[0].split("/", 1)[0]
        in_sdist = {n.split("/", 1)[1] for n in archive.getnames() if "/" in n}
    required = {f"src/{path}" for path in wanted} | {"pyproject.toml", "README.md", "LICENSE"}
    problems += [f"sdist lacks {path}" for path in sorted(required - in_sdist)]

    for problem in problems:
        print(f"packaging: {problem}", file=sys.stderr)
    if not problems:
        print(f"{Path(sdist).name} and {Path(wheel).name}: {len(wanted)} package files in each ({top})")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
