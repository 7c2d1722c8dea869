"""Walking a `--context` folder for `rlm.context_files`: which files it holds, read as a person means them.

Hidden and ignored paths (`.gitignore`, also nested ones, a clone's `.git/info/exclude`, and those of
the repository the folder lies inside, above it) are left out, `--include`/`--exclude` globs
narrow them, and the size cap stops a mistaken `--context /` while it walks. A folder may be someone
else's (a cloned repository, an unpacked archive): it is walked by directory descriptors (each folder
opened relative to its parent's, O_NOFOLLOW), so no symlink in it is followed, even one swapped in
mid-walk, and no file is read past the cap (each through `rlm.context_reads`).

A `.gitignore` that cannot be applied (past 1 MB or past the work budget below, unreadable, not a
regular file) refuses the folder with a ContextError naming it: leaving it out would let in the files
it keeps out (fail closed).
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from rlm.context_reads import NOFOLLOW, LoadReport, budget_left, count_text, read_file
from rlm.errors import ContextError
from rlm.gitignore import Globs, IgnoreFile, State, as_bytes, parse_gitignore

# A .gitignore past these refuses its folder (ContextError). The work in force in a folder (the
# weight of its .gitignore files' lines and its parents', see rlm.gitignore, plus one per file)
# bounds the cost of matching one name there: about 3.5 ms at worst (a hostile file filling it),
# far less for real ones. 6,000 lets in GitHub's largest templates and the usual pairs (Joomla's
# weighs 3,243, Unity's with VisualStudio's 1,293; 1,000 refused them: attack round 24).
GITIGNORE_MAX_BYTES = 1 << 20
GITIGNORE_MAX_WORK = 6_000

_BY_DESCRIPTOR = os.open in os.supports_dir_fd and os.scandir in os.supports_fd  # not on Windows
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)

# Folders often hold things no one means as context, ignored or not.
SKIPPED_DIRS = {"__pycache__", "node_modules", "venv", "site-packages", "dist-packages"}


class _Dir:
    """An open folder descriptor, closed once the subfolders waiting to be opened from it are."""

    __slots__ = ("fd", "waiting")

    def __init__(self, fd: int) -> None:
        self.fd, self.waiting = fd, 0

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def opened_one(self) -> None:
        self.waiting -= 1
        if self.waiting <= 0:
            self.close()


@dataclass(frozen=True)
class _Folder:
    """A folder of the walk: the open folder it is in, its names under the root, and the rules' state there."""

    parent: _Dir | None  # None for the root
    names: tuple[str, ...]
    ignores: tuple[tuple[IgnoreFile, State], ...]  # each .gitignore in force, outermost first, and its state here
    unwanted: State
    wanted: State
    weight: int = 0  # the work in force (see GITIGNORE_MAX_WORK): bounds the cost of matching a name

    def enter(self, parent: _Dir, name: str, wanted: Globs | None, unwanted: Globs) -> _Folder:
        return _Folder(
            parent,
            (*self.names, name),
            tuple((rules, rules.enter(state, name)) for rules, state in self.ignores),
            unwanted.enter(self.unwanted, name),
            wanted.enter(self.wanted, name) if wanted else (),
            self.weight,
        )


def read_folder(
    root: Path, raw: str, wanted: Globs | None, unwanted: Globs, report: LoadReport, max_bytes: int
) -> dict[str, str]:
    """The text of each file under `root` (its name under root's parent -> text), in sorted order,
    without hidden, ignored, excluded, not-included, symlinked or special ones.

    Walked by descriptors: the root is opened once, each subfolder with O_NOFOLLOW relative to its
    parent's descriptor, and each file relative to its folder's, so no path is resolved twice and a
    folder swapped for a symlink mid-walk is never followed. Files are read as they are found, and
    their names and text counted against the cap, so a `--context /` stops at the cap, not after a
    listing of the disk. An explicit stack (os.walk recursed once per level before Python 3.12: a
    deep tree raised RecursionError); a descriptor stays open only while subfolders wait to be opened
    from it. Each folder carries the .gitignore files in force there with their matching state, so a
    name costs the work in force (bounded: see GITIGNORE_MAX_WORK), not the depth.
    """
    if not _BY_DESCRIPTOR:
        raise ContextError(
            f"Reading a folder ({raw}) needs directory descriptors, which this system lacks: name the files"
        )
    try:
        root_fd = os.open(root, _DIR_FLAGS)
    except OSError as error:
        raise ContextError(
            f"Cannot read the context folder {raw}: {error.strerror or error}; check that you may list it (ls -ld), "
            "or name the files to read"
        ) from None
    base = root.relative_to(root.parent)
    held: dict[tuple[str, ...], str] = {}
    above = _repository_rules(root, raw, report)
    stack = [_Folder(None, (), above.ignores, unwanted.start(), wanted.start() if wanted else (), above.weight)]
    live: set[_Dir] = set()
    try:
        while stack:
            here = stack.pop()
            if here.parent is None:
                folder = _Dir(root_fd)
            else:
                try:
                    folder = _Dir(os.open(here.names[-1], _DIR_FLAGS | NOFOLLOW, dir_fd=here.parent.fd))
                except OSError as error:  # swapped for a symlink (ELOOP), removed, not ours to list
                    _out_of_descriptors(error)
                    report.skip("symlinked" if _is_link_error(error) else "unreadable")
                    continue
                finally:
                    here.parent.opened_one()
            live.add(folder)
            here, subfolders = _read_listed(folder.fd, here, raw, base, wanted, unwanted, report, max_bytes, held)
            folder.waiting = len(subfolders)
            if not subfolders:
                folder.close()
            for name in reversed(subfolders):
                stack.append(here.enter(folder, name, wanted, unwanted))
    finally:
        for each in live:
            each.close()
    return {str(base.joinpath(*names)): text for names, text in sorted(held.items())}


def _read_listed(
    fd: int,
    here: _Folder,
    raw: str,
    base: Path,
    wanted: Globs | None,
    unwanted: Globs,
    report: LoadReport,
    max_bytes: int,
    held: dict[tuple[str, ...], str],
) -> tuple[_Folder, list[str]]:
    """Read the files of the folder open at `fd` into `held`; the folder with its ignore files in force,
    and its subfolders to walk, in sorted order."""
    try:
        with os.scandir(fd) as listing:
            entries = sorted(listing, key=lambda entry: entry.name)
    except OSError as error:
        if not here.names:
            raise ContextError(
                f"Cannot read the context folder {raw}: {error.strerror or error}; check that you may list it "
                "(ls -ld), or name the files to read"
            ) from None
        _out_of_descriptors(error)
        report.skip("unreadable")  # a subfolder we may not list (an archive's modes, another user's)
        return here, []
    if not here.names:
        here = _with_ignore_file(here, fd, (".git", "info", "exclude"), raw, report)
    if any(entry.name == ".gitignore" for entry in entries):
        here = _with_ignore_file(here, fd, (".gitignore",), raw, report)
    subfolders: list[str] = []
    for entry in entries:
        name = entry.name
        try:
            is_link = entry.is_symlink()
            is_dir = not is_link and entry.is_dir(follow_symlinks=False)
            is_file = not is_link and not is_dir and entry.is_file(follow_symlinks=False)
        except OSError:
            report.skip("unreadable")
            continue
        reason = _left_out(here, name, is_dir, wanted, unwanted)
        if reason is None and is_link:
            reason = "symlinked"  # git and tar store symlinks: one may point at ~/.ssh or /proc
        elif reason is None and not is_dir and not is_file:
            reason = "special"  # a FIFO would wait for a writer, a device never ends
        if reason is not None:
            report.skip(reason)
        elif is_dir:
            subfolders.append(name)
        else:
            names = (*here.names, name)
            key = len(as_bytes(str(base.joinpath(*names))))  # what the context holds for the name
            try:
                got = read_file(name, budget_left(report, max_bytes) - key, follow=False, dir_fd=fd)
            except OSError as error:
                _out_of_descriptors(error)
                report.skip("symlinked" if _is_link_error(error) else "unreadable")
                continue
            if isinstance(got, str):
                report.skip(got)
                continue
            report.name_bytes += key
            held[names] = count_text(report, got, max_bytes, raw, in_folder=True)
    return here, subfolders


def _repository_rules(root: Path, raw: str, report: LoadReport) -> _Folder:
    """The ignore files of the git repository `root` lies inside, above it, in force at `root`.

    `--context repo/config` must leave out what git leaves out there: the repository's
    `.git/info/exclude` and the `.gitignore` files from its top down to `root`'s parent (root's own
    are the walk's). None of this when `root` is no repository's subfolder, or when those rules
    ignore the named folder as a whole (a home folder kept in git with `*` ignored: the user named
    the folder, and its own .gitignore files still apply) (attack round 24).
    """
    nothing = _Folder(None, (), (), (), ())
    try:
        absolute = root.resolve()
        top = next((folder for folder in absolute.parents if (folder / ".git").exists()), None)
    except OSError:  # a folder above we may not look into: no repository we can read
        return nothing
    if top is None or (absolute / ".git").exists():
        return nothing
    here = nothing
    below = absolute.relative_to(top).parts
    for depth in range(len(below)):
        folder = top.joinpath(*below[:depth])
        try:
            fd = os.open(folder, _DIR_FLAGS)
        except OSError:
            return nothing if depth == 0 else here
        try:
            if depth == 0:
                here = _with_ignore_file(here, fd, (".git", "info", "exclude"), raw, report)
            here = _with_ignore_file(here, fd, (".gitignore",), raw, report)
        except ContextError:
            raise ContextError(
                f"Cannot apply the .gitignore files of the repository at {top} above the context folder {raw} "
                "(one is past 1 MB, past the matching work a folder may cost, or unreadable); it may keep files "
                "out, so nothing is read: name the files to read"
            ) from None
        finally:
            os.close(fd)
        name = below[depth]
        for rules, state in reversed(here.ignores):
            decision = rules.decides(state, as_bytes(name), True)
            if decision:
                return nothing  # the user named an ignored folder: theirs to read, by its own rules
            if decision is not None:
                break
        entered = tuple((rules, rules.enter(state, name)) for rules, state in here.ignores)
        here = _Folder(None, (*here.names, name), entered, (), (), here.weight)
    return _Folder(None, (), here.ignores, (), (), here.weight)


def _left_out(here: _Folder, name: str, is_dir: bool, wanted: Globs | None, unwanted: Globs) -> str | None:
    if name.startswith("."):
        return "hidden"
    if is_dir and name in SKIPPED_DIRS:
        return "ignored"
    raw = as_bytes(name)
    for rules, state in reversed(here.ignores):  # git: a deeper .gitignore overrides its parents'
        decision = rules.decides(state, raw, is_dir)
        if decision is not None:
            if decision:
                return "ignored"
            break
    if unwanted.match(here.unwanted, raw, is_dir):
        return "excluded"
    if not is_dir and wanted is not None and not wanted.match(here.wanted, raw, False):
        return "not included"
    return None


def _with_ignore_file(here: _Folder, fd: int, names: tuple[str, ...], raw: str, report: LoadReport) -> _Folder:
    """`here` with the ignore file at `names` (relative to the folder open at `fd`) in force.

    `.gitignore`, or `.git/info/exclude` at the root (a clone's own list, below every .gitignore in
    precedence, as in git). A symlink is not applied (git >= 2.32 neither), nor a FIFO or device (git
    reads its size, 0); a missing one is no matter. One that cannot be applied (unreadable, past 1 MB
    or past the work budget) refuses the folder: leaving it out would let in what it keeps out.
    """
    where = "/".join((*(here.names or ()), *names))
    opened: list[int] = []
    try:
        for folder in names[:-1]:
            opened.append(os.open(folder, _DIR_FLAGS | NOFOLLOW, dir_fd=opened[-1] if opened else fd))
        got = read_file(names[-1], GITIGNORE_MAX_BYTES, follow=False, dir_fd=opened[-1] if opened else fd, text=False)
    except OSError as error:
        if _is_link_error(error) or error.errno in (errno.ENOENT, errno.ENOTDIR):
            return here
        _unusable(raw, here, where, error.strerror or str(error))
    finally:
        for each in opened:
            os.close(each)
    if isinstance(got, str):
        return here  # a FIFO or device: git reads nothing from it either (its size is 0)
    budget = GITIGNORE_MAX_WORK - here.weight - 1
    rules = parse_gitignore(got.data, budget) if got.size <= GITIGNORE_MAX_BYTES else None
    if rules is None:
        _unusable(
            raw, here, where, f"past {GITIGNORE_MAX_BYTES:,} bytes, or past the matching work its folder may cost"
        )
    if not rules:
        return here
    ignores = (*here.ignores, (rules, rules.start()))
    return _Folder(here.parent, here.names, ignores, here.unwanted, here.wanted, here.weight + 1 + rules.weight)


def _unusable(raw: str, here: _Folder, where: str, why: str) -> NoReturn:
    folder = "/".join(here.names)
    fix = f"leave its folder out with --exclude '/{folder}/'" if folder else "name the files to read"
    raise ContextError(
        f"Cannot apply {where} in the context folder {raw} ({why}); it may keep files out, so nothing is read: "
        f"remove it, or {fix}"
    )


def _out_of_descriptors(error: OSError) -> None:
    """A walk that runs out of descriptors would leave the rest of the tree out unseen: refuse it."""
    if error.errno in (errno.EMFILE, errno.ENFILE):
        raise ContextError(
            "The context folder is nested deeper than this process may hold folders open (ulimit -n): "
            "name a subfolder, or raise the limit"
        ) from None


def _is_link_error(error: OSError) -> bool:
    # O_NOFOLLOW on a symlink: ELOOP on Linux, EMLINK on FreeBSD, EFTYPE on NetBSD.
    return error.errno in (errno.ELOOP, errno.EMLINK, getattr(errno, "EFTYPE", -1))
