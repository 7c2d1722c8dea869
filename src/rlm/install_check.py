"""Warns when another distribution's `rlm` package is installed next to this one; run at `import rlm`.

PyPI's `rlms` and `recursive-llm` (0.5.0) also install a top-level `rlm` package. In one folder their
files and ours overwrite each other; in two folders on sys.path one hides the other. The check costs
two directory listings, one small file read and a few stats; installed metadata is read to name
the other distribution only once something foreign has been found.
"""

from __future__ import annotations

import os
import re
import sys
import warnings
from collections.abc import Sequence

DISTRIBUTION = "recursive-llm-dspy"
PACKAGE = "rlm"
PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
# The distribution is not on PyPI yet, so every "install X" hint names the way it is installed today:
# from a clone. One text for all of them (the local model, e2b, ray, parquet).
EXTRA_INSTALL_HINT = 'pip install {options}-e ".[{extra}]" run in your clone of recursive-llm (it is not on PyPI yet)'


def install_hint(extra: str, force_reinstall: bool = False) -> str:
    """How to add the optional dependencies of `extra` ("local", "e2b", "ray", "parquet")."""
    return EXTRA_INSTALL_HINT.format(extra=extra, options="--force-reinstall " if force_reinstall else "")


class PackageConflictWarning(RuntimeWarning):
    """Another distribution installs a top-level `rlm` package in this environment."""


_warned = False


def warn_about_conflicts() -> None:
    """Warn once per process if another `rlm` package shares this environment.

    `rlm/__init__.py` calls this; the `rlm` command calls it too, because a distribution installed
    after this one replaces our `__init__.py` and the import-time call never runs.
    """
    global _warned
    if _warned:
        return
    _warned = True
    try:
        problems = find_conflicts()
        if not _loaded_init_is_ours():
            problems.insert(0, _replaced_init_message())
    except Exception:  # an advisory check never breaks `import rlm` (zipapps, odd file systems)
        return
    if problems:
        warnings.warn("\n".join(problems), PackageConflictWarning, stacklevel=3)


def find_conflicts(package_dir: str | None = None, search_path: Sequence[str] | None = None) -> list[str]:
    """One sentence per problem found (empty when there is none): files in our package folder (by
    default this one) that this distribution did not install, and other `rlm` packages elsewhere on
    `search_path` (by default sys.path)."""
    package_dir = package_dir or PACKAGE_DIR
    problems = []
    site_dir = os.path.dirname(package_dir)
    foreign = _foreign_entries(package_dir, site_dir)
    if foreign:
        owners = _owners_of_package(site_dir)
        problems.append(
            f"{_describe(owners, 'Another package')} installed its own `{PACKAGE}` package into "
            f"{package_dir}, the folder {DISTRIBUTION} installed (not {DISTRIBUTION}'s: {', '.join(foreign)}). "
            f"The two packages' files overwrite each other, so `import {PACKAGE}` may run a mix of both. "
            f"Fix: {_reinstall_command(owners, site_dir)} (uninstalling only the other one would delete files "
            f"the two share)."
        )
    for other_dir in _other_packages_on_path(package_dir, search_path):
        owners = _owners_of_package(os.path.dirname(other_dir))
        origin = f"installed by {_describe(owners, '')}" if owners else "not from an installed distribution"
        fix = f"pip uninstall {' '.join(name for name, _ in owners)}" if owners else "take it off sys.path"
        problems.append(
            f"Another `{PACKAGE}` package is on sys.path at {other_dir} ({origin}). {DISTRIBUTION}'s, at "
            f"{package_dir}, is found first, so that one cannot be imported here. Fix: {fix}, or give "
            f"each project its own virtual environment."
        )
    return problems


def _foreign_entries(package_dir: str, site_dir: str) -> list[str]:
    """Names in our package folder that our wheel's RECORD does not list. Without a RECORD that lists
    the package (an editable install, a source checkout) there is nothing to compare: none."""
    installed = _installed_top_names(site_dir)
    if not installed:
        return []
    try:
        present = os.listdir(package_dir)
    except OSError:
        return []
    return sorted(name for name in present if name not in installed and name != "__pycache__")


def _installed_top_names(site_dir: str) -> set[str]:
    """Top-level names under `rlm/` in the RECORD of our dist-info in `site_dir`."""
    names: set[str] = set()
    for record_path in _our_records(site_dir):
        try:
            with open(record_path, encoding="utf-8") as record:
                for line in record:
                    parts = line.split(",", 1)[0].strip('"').split("/")
                    if len(parts) > 1 and parts[0] == PACKAGE:
                        names.add(parts[1])
        except OSError:
            continue
    return names


def _our_records(site_dir: str) -> list[str]:
    """Our RECORD files in `site_dir`: the dist-info installers name for this version is tried first,
    since listing a large site-packages costs about half a millisecond."""
    version = getattr(sys.modules.get(PACKAGE), "__version__", "")
    expected = os.path.join(site_dir, f"{_normalize(DISTRIBUTION).replace('-', '_')}-{version}.dist-info", "RECORD")
    if os.path.isfile(expected):
        return [expected]
    try:
        entries = os.listdir(site_dir)
    except OSError:
        return []
    return [
        os.path.join(site_dir, entry, "RECORD")
        for entry in entries
        if entry.endswith(".dist-info") and _normalize(entry.split("-", 1)[0]) == _normalize(DISTRIBUTION)
    ]


def _other_packages_on_path(package_dir: str, search_path: Sequence[str] | None) -> list[str]:
    """`rlm` packages (regular ones: a folder with `__init__.py`, or `rlm.py`) in other sys.path folders."""
    found: list[str] = []
    seen = {_identity(package_dir)}
    for entry in sys.path if search_path is None else search_path:
        folder, module = os.path.join(entry or ".", PACKAGE), os.path.join(entry or ".", PACKAGE + ".py")
        # Not a bare `rlm` file: the `rlm` command itself sits in bin/, sys.path[0] when a script there runs.
        for candidate, marker in ((folder, os.path.join(folder, "__init__.py")), (module, module)):
            if not os.path.isfile(marker):
                continue
            identity = _identity(candidate)  # the same folder reached through a symlink or another spelling
            if identity not in seen:
                seen.add(identity)
                found.append(candidate)
    return found


def _identity(path: str) -> tuple[int, int]:
    status = os.stat(path)
    return status.st_dev, status.st_ino


def _owners_of_package(site_dir: str) -> list[tuple[str, str]]:
    """(name, version) of each distribution in `site_dir`, other than ours, that installs `rlm`.
    Reads installed metadata (tenths of a second in a large environment): only on a conflict."""
    from importlib import metadata

    owners = []
    for dist in metadata.distributions(path=[site_dir]):
        name = dist.metadata["Name"] or "?"
        if _normalize(name) == _normalize(DISTRIBUTION):
            continue
        top_level = dist.read_text("top_level.txt")
        if top_level is not None:
            claims = PACKAGE in top_level.split()
        else:
            claims = any(str(path) in (f"{PACKAGE}/__init__.py", f"{PACKAGE}.py") for path in dist.files or ())
        if claims:
            owners.append((name, dist.version))
    return sorted(owners)


def _loaded_init_is_ours() -> bool:
    """Whether the `rlm` module in this process is our `__init__.py`: a distribution installed after
    ours overwrites it, and then `from rlm import RLM` gives the other project's class."""
    module = sys.modules.get(PACKAGE)
    return module is None or hasattr(module, "_EXPORTS")


def _replaced_init_message() -> str:
    site_dir = os.path.dirname(PACKAGE_DIR)
    owners = _owners_of_package(site_dir)
    return (
        f"{os.path.join(PACKAGE_DIR, '__init__.py')} is not {DISTRIBUTION}'s: "
        f"{_describe(owners, 'another distribution')} "
        f"installed over it, so `from {PACKAGE} import RLM` gives that project's class. "
        f"Fix: {_reinstall_command(owners, site_dir)}."
    )


def _reinstall_command(owners: list[tuple[str, str]], site_dir: str) -> str:
    """Uninstall both, then install ours again from where it came from (PyPI does not have it)."""
    names = [name for name, _ in owners]
    return f"pip uninstall -y {' '.join([*names, DISTRIBUTION])} && {_install_again_command(site_dir)}"


def _install_again_command(site_dir: str) -> str:
    """`pip install [-e] SOURCE` from our install's direct_url.json (PEP 610), read before the
    uninstall deletes it; without one, the clone form, run in the clone."""
    import json
    from importlib import metadata

    ours = next(iter(metadata.distributions(name=DISTRIBUTION, path=[site_dir, *sys.path])), None)
    try:
        origin = json.loads((ours.read_text("direct_url.json") if ours else None) or "{}")
    except ValueError:
        origin = {}
    url = origin.get("url", "") if isinstance(origin, dict) else ""
    if url.startswith("file://"):
        import shlex
        from urllib.parse import unquote, urlparse

        editable = "-e " if (origin.get("dir_info") or {}).get("editable") else ""
        return f"pip install {editable}{shlex.quote(unquote(urlparse(url).path))}"
    return "pip install -e . (run in your clone of recursive-llm: it is not on PyPI yet)"


def _describe(owners: list[tuple[str, str]], unknown: str) -> str:
    return " and ".join(f"{name} {version}" for name, version in owners) or unknown


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()
