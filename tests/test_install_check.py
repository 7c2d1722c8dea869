"""Another distribution's `rlm` package next to ours (PyPI's `rlms`, `recursive-llm` 0.5.0) is said at import.

The environments are fake site-packages folders under tmp_path: a package folder, and dist-info
folders with the METADATA, RECORD and top_level.txt an installer writes. Nothing is installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import rlm
from rlm import install_check
from rlm.install_check import DISTRIBUTION, find_conflicts

OUR_FILES = ["rlm/__init__.py", "rlm/facade.py", "rlm/errors.py", "rlm/cli/__init__.py"]
RLMS_FILES = ["rlm/__init__.py", "rlm/core/__init__.py", "rlm/core/rlm.py", "rlm/clients/__init__.py"]
RECURSIVE_LLM_FILES = ["rlm/__init__.py", "rlm/core.py", "rlm/errors.py", "rlm/repl.py"]


def install(site: Path, name: str, version: str, files: list[str], top_level: bool = True) -> None:
    """Write `files` (empty modules) and a dist-info for them, as pip leaves a wheel's install."""
    for file in files:
        path = site / file
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    dist_info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    record = [f"{file},sha256=x,0" for file in files] + [f"{dist_info.name}/RECORD,,"]
    (dist_info / "RECORD").write_text("\n".join(record) + "\n")
    if top_level:
        (dist_info / "top_level.txt").write_text("rlm\n")


@pytest.fixture
def site(tmp_path: Path) -> Path:
    site = tmp_path / "site-packages"
    install(site, DISTRIBUTION, rlm.__version__, OUR_FILES, top_level=False)  # hatchling writes none
    return site


def test_a_wheel_install_alone_reports_nothing(site):
    assert find_conflicts(str(site / "rlm"), search_path=[str(site)]) == []


def test_rlms_installed_into_our_folder_is_named_with_the_fix(site):
    install(site, "rlms", "0.1.3", RLMS_FILES)

    [problem] = find_conflicts(str(site / "rlm"), search_path=[str(site)])

    assert problem.startswith(f"rlms 0.1.3 installed its own `rlm` package into {site / 'rlm'}")
    assert "(not recursive-llm-dspy's: clients, core)" in problem
    assert "overwrite each other" in problem
    # Not on PyPI: the fix reinstalls from the clone, never `pip install recursive-llm-dspy`.
    assert "pip uninstall -y rlms recursive-llm-dspy && pip install -e . (run in your clone" in problem


def test_the_fix_reinstalls_from_the_folder_our_install_came_from(site):
    [dist_info] = site.glob("recursive_llm_dspy-*.dist-info")
    (dist_info / "direct_url.json").write_text('{"url": "file:///home/me/recursive%20llm", "dir_info": {}}')
    install(site, "rlms", "0.1.3", RLMS_FILES)

    [problem] = find_conflicts(str(site / "rlm"), search_path=[str(site)])

    assert "Fix: pip uninstall -y rlms recursive-llm-dspy && pip install '/home/me/recursive llm' (" in problem


def test_pypi_recursive_llm_without_top_level_txt_is_found_by_its_record(site):
    install(site, "recursive-llm", "0.5.0", RECURSIVE_LLM_FILES, top_level=False)

    [problem] = find_conflicts(str(site / "rlm"), search_path=[str(site)])

    assert problem.startswith("recursive-llm 0.5.0 installed its own `rlm` package")
    assert "core.py, repl.py" in problem
    assert "pip uninstall -y recursive-llm recursive-llm-dspy" in problem


def test_our_record_is_found_when_the_version_differs_from_the_running_code(tmp_path):
    site = tmp_path / "site-packages"
    install(site, DISTRIBUTION, "9.9.9", OUR_FILES, top_level=False)
    install(site, "rlms", "0.1.3", RLMS_FILES)

    [problem] = find_conflicts(str(site / "rlm"), search_path=[])

    assert "(not recursive-llm-dspy's: clients, core)" in problem


def test_files_no_distribution_claims_are_still_reported(site):
    (site / "rlm" / "stray.py").touch()

    [problem] = find_conflicts(str(site / "rlm"), search_path=[])

    assert problem.startswith("Another package installed its own `rlm` package")
    assert "stray.py" in problem


def test_a_source_checkout_without_record_is_not_compared(tmp_path):
    checkout = tmp_path / "src"
    for file in [*OUR_FILES, "rlm/notes.py"]:
        (checkout / file).parent.mkdir(parents=True, exist_ok=True)
        (checkout / file).touch()

    assert find_conflicts(str(checkout / "rlm"), search_path=[str(checkout)]) == []


def test_another_rlm_package_later_on_sys_path_is_named(site, tmp_path):
    system_site = tmp_path / "system-site-packages"
    install(system_site, "rlms", "0.1.3", RLMS_FILES)

    [problem] = find_conflicts(str(site / "rlm"), search_path=[str(site), str(system_site)])

    other = system_site / "rlm"
    assert problem.startswith(f"Another `rlm` package is on sys.path at {other} (installed by rlms 0.1.3)")
    assert "cannot be imported here" in problem
    assert "Fix: pip uninstall rlms" in problem


def test_a_plain_rlm_folder_on_sys_path_is_reported_without_an_owner(site, tmp_path):
    checkout = tmp_path / "checkout"
    (checkout / "rlm").mkdir(parents=True)
    (checkout / "rlm" / "__init__.py").touch()

    [problem] = find_conflicts(str(site / "rlm"), search_path=[str(site), str(checkout)])

    assert "(not from an installed distribution)" in problem
    assert "take it off sys.path" in problem


def test_our_own_folder_reached_through_a_symlink_is_not_another_package(site, tmp_path):
    (tmp_path / "link").symlink_to(site, target_is_directory=True)

    assert find_conflicts(str(site / "rlm"), search_path=[str(site), str(tmp_path / "link")]) == []


def test_a_folder_named_rlm_without_init_is_not_a_package(site, tmp_path):
    (tmp_path / "work" / "rlm").mkdir(parents=True)  # e.g. a folder of saved runs in the working directory

    assert find_conflicts(str(site / "rlm"), search_path=[str(site), str(tmp_path / "work")]) == []


def test_the_rlm_command_in_a_scripts_folder_is_not_a_package(site, tmp_path):
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "rlm").write_text("#!/usr/bin/env python\n")  # sys.path[0] when bin/pytest runs

    assert find_conflicts(str(site / "rlm"), search_path=[str(tmp_path / "bin"), str(site)]) == []


def test_an_rlm_module_file_on_sys_path_is_reported(site, tmp_path):
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "rlm.py").touch()

    [problem] = find_conflicts(str(site / "rlm"), search_path=[str(site), str(tmp_path / "scripts")])

    assert problem.startswith(f"Another `rlm` package is on sys.path at {tmp_path / 'scripts' / 'rlm.py'}")


def run_python(code: str, pythonpath: Path) -> subprocess.CompletedProcess[str]:
    """A fresh interpreter without site-packages (-S): only `pythonpath` and the standard library."""
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    return subprocess.run([sys.executable, "-S", "-c", code], env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture
def copied_install(tmp_path: Path) -> Path:
    """This package as a wheel leaves it: its files under site-packages and a RECORD listing them."""
    site = tmp_path / "site-packages"
    shutil.copytree(Path(rlm.__file__).parent, site / "rlm", ignore=shutil.ignore_patterns("__pycache__"))
    files = sorted(path.relative_to(site).as_posix() for path in (site / "rlm").rglob("*") if path.is_file())
    dist_info = site / f"recursive_llm_dspy-{rlm.__version__}.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {DISTRIBUTION}\nVersion: {rlm.__version__}\n")
    (dist_info / "RECORD").write_text("".join(f"{file},sha256=x,0\n" for file in files))
    return site


def test_import_rlm_warns_when_rlms_shares_the_folder(copied_install):
    install(copied_install, "rlms", "0.1.3", [f for f in RLMS_FILES if f != "rlm/__init__.py"])

    result = run_python("import rlm; print(rlm.__file__)", copied_install)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(copied_install / "rlm" / "__init__.py")
    assert "PackageConflictWarning: rlms 0.1.3 installed its own `rlm` package" in result.stderr
    assert "pip uninstall -y rlms recursive-llm-dspy && pip install -e . (run in your clone" in result.stderr


def test_import_rlm_is_silent_in_a_clean_install(copied_install):
    result = run_python("import warnings; warnings.simplefilter('error'); import rlm", copied_install)

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_the_rlm_command_says_when_another_projects_init_replaced_ours(copied_install):
    install(copied_install, "rlms", "0.1.3", [f for f in RLMS_FILES if f != "rlm/__init__.py"])
    (copied_install / "rlm" / "__init__.py").write_text("RLM = 'the other project'\n")  # installed after ours

    result = run_python("import sys; from rlm.cli.main import main; sys.exit(main(['--help']))", copied_install)

    assert result.returncode == 0, result.stderr
    assert f"{copied_install / 'rlm' / '__init__.py'} is not recursive-llm-dspy's: rlms 0.1.3" in result.stderr
    assert "`from rlm import RLM` gives that project's class" in result.stderr


def test_the_warning_is_given_once_per_process(site, monkeypatch):
    install(site, "rlms", "0.1.3", RLMS_FILES)
    monkeypatch.setattr(install_check, "PACKAGE_DIR", str(site / "rlm"))
    monkeypatch.setattr(install_check, "_warned", False)

    with pytest.warns(install_check.PackageConflictWarning, match="rlms 0.1.3"):
        install_check.warn_about_conflicts()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        install_check.warn_about_conflicts()


def test_import_rlm_works_from_a_zipapp(tmp_path):
    # Inside a zip the package folder is no directory: the advisory check must never break the import.
    archive = tmp_path / "app.pyz"
    source = Path(rlm.__file__).parent
    shutil.make_archive(str(tmp_path / "app"), "zip", root_dir=source.parent, base_dir="rlm")
    (tmp_path / "app.zip").rename(archive)
    script = f"import sys; sys.path.insert(0, {str(archive)!r}); import rlm; print(rlm.__file__)"
    done = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "app.pyz" in done.stdout
