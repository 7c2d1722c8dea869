"""Twenty-first attack round: with fresh eyes, what the OS jail alone (policy off) still lets a worker
do to machine-wide kernel state (the dentry cache, KSM merging, prctl and the newest syscalls), and
the host's reading of a `--context` folder that someone else made (a cloned repository, an unpacked
archive): symlinks, FIFOs and devices, huge and sparse files, deep trees, many and hostile
`.gitignore` files.

Probed and held (kept below): FIFOs, devices and dangling symlinks in a context folder are skipped at
once; a jailed worker's pid-taking, quota-taking and newest syscalls (pidfd_getfd, process_madvise,
io_pgetevents, quotactl_fd, cachestat, lsm_*, PR_SET_IO_FLUSHER, ...) are refused.
Probed and not kept as tests (see /tmp/s11/attack21/HOLES.md, "notes"): mincore and preadv2
(RWF_NOWAIT) tell which pages of a readable file are cached; MAP_POPULATE (and a plain read) pull a
readable file into the page cache as the refused MADV_WILLNEED did; PR_SET_NAME renames the worker in
the host's process list; membarrier, timerfd/eventfd/signalfd (under RLIMIT_NOFILE), rseq, pkey_alloc.

Eight holes, found as strict xfails (reproductions, causes and suggested fixes in
/tmp/s11/attack21/HOLES.md); seven closed the same session, hole 6 is open (its test stays a strict
xfail and docs/SECURITY.md says so); what they were:
1. a symlink in a context folder is followed: `notes.md -> ~/.aws/credentials` (or /proc/self/status)
   puts a file outside the folder the user named into `context`, in reach of the model's code;
2. a context file is read whole before the size cap is checked: a sparse file of any size is
   allocated and read (300 MB under a 1 MB cap; a terabyte ends the host);
3. nested `.gitignore` files are matched against every later path, each walking its parents: 2,000
   folders with one took 41 s, 20,000 (a large repository) over an hour;
4. a `.gitignore` line of many wildcards (`*a*a*a*a*a*a*a*a*a*a*b`) matches a long file name in
   exponential time (pathspec's backtracking regex): one file, 21 s; a few more stars, days;
5. a context folder nested ~1,000 deep ends `rlm ask` in a RecursionError traceback (os.walk
   recurses on Python < 3.12);
6. (policy off) the worker fills the machine's dentry cache with negative entries by stat()ing
   names that do not exist: ~750,000 (140 MB of kernel memory) in a 4 s step, outside its memory
   cap, and kept after the worker is gone;
7. (policy off) the worker may opt its memory into KSM merging (madvise MADV_MERGEABLE,
   prctl PR_SET_MEMORY_MERGE): where the machine runs KSM, the page-deduplication side channel to
   every other merging process (VMs, other workers);
8. a file in a context folder that the user may not read (an archive unpacked with its modes) ends
   `rlm ask` in a PermissionError traceback (a symlink to /proc/self/mem: OSError EIO).
The fixes: the folder reader (context_files.py) opens each file once with O_NOFOLLOW and keeps
regular files only (symlinks, special and unreadable files are left out and counted), reads no more
than the budget left, walks with an explicit stack carrying each folder's .gitignore rules, and
matches .gitignore patterns with a matcher of its own that never backtracks (gitignore.py); the
jail's madvise advice and prctl options are allowlists (syscall_arguments.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import tracemalloc
import uuid
from pathlib import Path

import pytest

from rlm.context_files import load_context
from rlm.errors import ContextError
from rlm.sandbox.base import SandboxLimits
from rlm.sandbox.local import LocalSandbox, jail
from tests.sandbox.conftest import attempt, no_calls

needs_jail = pytest.mark.skipif(not jail.probe().available, reason=f"no OS jail here: {jail.probe().problem}")


# --- the host reading a --context folder someone else made ----------------------------------------------------
def _read_or_refused(paths: list[str], **kwargs):
    """The context `load_context` builds, or None when it refuses with the library's ContextError."""
    try:
        return load_context(paths, **kwargs)[0]
    except ContextError:
        return None


def test_a_symlink_in_a_context_folder_never_reads_a_file_outside_it(tmp_path):
    secret = tmp_path / "credentials"  # the user's ~/.aws/credentials, ~/.netrc, a .env elsewhere
    secret.write_text("aws_secret_access_key = hunter2\n")
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "README.md").write_text("Summarize notes.md for me.\n")
    (repo / "notes.md").symlink_to(secret)  # git stores symlinks; so do tar and zip
    (repo / "status.txt").symlink_to("/proc/self/status")  # the host process itself
    context = _read_or_refused([str(repo)])
    text = repr(context)
    assert "hunter2" not in text
    assert "VmRSS" not in text


def test_a_context_file_past_the_cap_is_never_read_whole(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "a.txt").write_text("text\n")
    with open(repo / "huge.txt", "wb") as sparse:  # no disk used: a truncate, as an archive can make
        sparse.write(b"text\n")
        sparse.truncate(64 << 20)
    tracemalloc.start()
    try:
        _read_or_refused([str(repo)], max_bytes=1 << 20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"read {peak >> 20} MB for a 1 MB cap"


def _finishes_within(script: str, seconds: float) -> bool:
    """Whether `script` (a fresh interpreter) ends within `seconds` of wall time; killed otherwise."""
    try:
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=seconds)
    except subprocess.TimeoutExpired:
        return False
    assert done.returncode == 0, done.stderr[-2000:]
    return True


def test_many_nested_gitignores_are_read_in_time_linear_in_the_folder(tmp_path):
    # 1,500 folders, each with a .gitignore and a file: linear work is well under a second; the
    # quadratic walk took 41 s for 2,000 and grows with the square.
    script = textwrap.dedent(f"""
        import os
        from rlm.context_files import load_context
        root = {str(tmp_path / "repo")!r}
        for i in range(1500):
            folder = os.path.join(root, f"d{{i:05}}")
            os.makedirs(folder)
            with open(os.path.join(folder, ".gitignore"), "w") as f:
                f.write("*.log\\n")
            with open(os.path.join(folder, "a.txt"), "w") as f:
                f.write("x\\n")
        assert len(load_context([root])[0]) == 1500
    """)
    assert _finishes_within(script, 8)


def test_a_hostile_gitignore_pattern_never_stalls_reading_the_folder(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / ".gitignore").write_text("*a" * 10 + "*b\n")
    (repo / ("a" * 40)).write_text("x\n")  # the name the pattern backtracks over: 21 s; 12 stars, 3 min
    script = f"from rlm.context_files import load_context\nload_context([{str(repo)!r}])\n"
    assert _finishes_within(script, 4)


def test_a_deeply_nested_context_folder_is_read_or_refused_never_raises(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    folder = os.open(repo, os.O_RDONLY)
    for _ in range(sys.getrecursionlimit() + 100):  # made relative to a descriptor: no path grows long
        os.mkdir("a", dir_fd=folder)
        deeper = os.open("a", os.O_RDONLY, dir_fd=folder)
        os.close(folder)
        folder = deeper
    leaf = os.open("x.txt", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=folder)
    os.write(leaf, b"deep\n")
    os.close(leaf)
    os.close(folder)
    try:
        _read_or_refused([str(repo)])  # a context or ContextError, never RecursionError
    finally:
        _flatten(repo)


def _flatten(repo: Path) -> None:
    """Move each level of the deep chain up beside `repo`'s first, so pytest's recursive clean-up of
    tmp_path never meets the depth (a tree left this deep failed every later pytest session's exit)."""
    level, moved = repo / "a", 0
    while (level / "a").is_dir():
        upper = repo / f"level{moved}"
        os.rename(level / "a", upper)
        level, moved = upper, moved + 1


def _load_as_another_user(folder: str) -> str:
    """What `load_context(folder)` ends with, run by a user who may not read every file: "ok", or the
    name of the exception. As root (CI), a forked child drops to nobody to be that user."""
    if os.geteuid() != 0:
        context = _read_or_refused([folder])
        return "ok" if context is not None else "ContextError"
    load_context([folder])  # its imports, done before the child may not read them (root reads every file)
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child
        outcome = "ok"
        try:
            os.setgid(65534)
            os.setuid(65534)
            _read_or_refused([folder])
        except BaseException as exc:
            outcome = type(exc).__name__
        os.write(write_end, outcome.encode())
        os._exit(0)
    os.close(write_end)
    os.waitpid(child, 0)
    with os.fdopen(read_end, "rb") as reader:
        return reader.read().decode()


def test_an_unreadable_file_in_a_context_folder_is_left_out_or_refused():
    import shutil
    import tempfile

    base = tempfile.mkdtemp(prefix="round21-")  # outside pytest's root-only folder, for the child
    try:
        os.chmod(base, 0o755)
        Path(base, "a.txt").write_text("text\n")
        Path(base, "b.txt").write_text("kept from others\n")
        os.chmod(Path(base, "b.txt"), 0)  # an archive unpacked with its modes, a file of another user
        assert _load_as_another_user(base) in ("ok", "ContextError")
    finally:
        shutil.rmtree(base)


def test_fifos_devices_and_dangling_links_in_a_context_folder_are_skipped_at_once(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "a.txt").write_text("text\n")
    os.mkfifo(repo / "pipe.txt")  # reading it would wait for a writer forever
    (repo / "zero.txt").symlink_to("/dev/zero")  # endless
    (repo / "gone.txt").symlink_to(tmp_path / "missing")
    os.mkfifo(repo / ".gitignore")
    started = time.monotonic()
    context = load_context([str(repo)])[0]
    assert list(context) == ["repo/a.txt"]
    assert time.monotonic() - started < 5


# --- the OS jail alone (policy off): machine-wide kernel state ---------------------------------------------------
def _meminfo_kb(field: str) -> int:
    with open("/proc/meminfo") as meminfo:
        return next(int(line.split()[1]) for line in meminfo if line.startswith(field + ":"))


@needs_jail
@pytest.mark.xfail(
    strict=True,
    reason="open (docs/SECURITY.md, 'What is not protected'): stat() of missing names fills the machine's dentry "
    "cache; only a memory cgroup per worker would charge it, and there is none here",
)
def test_the_worker_cannot_fill_the_machines_dentry_cache():
    limit_mb = 32
    box = LocalSandbox(SandboxLimits(exec_timeout=4.0, memory_limit_mb=limit_mb), python_policy=False)
    box.start()
    try:
        box.load("c")
        prefix = "/tmp/" + uuid.uuid4().hex + "x" * 200  # long names: each dentry also holds its name
        before = _meminfo_kb("SReclaimable") + _meminfo_kb("SUnreclaim")
        result = box.execute(
            textwrap.dedent(f"""
            import os, time
            n, end = 0, time.monotonic() + 3
            while time.monotonic() < end:
                for i in range(2000):
                    try:
                        os.stat({prefix!r} + str(n + i))  # Landlock does not govern lookups
                    except OSError:
                        pass
                n += 2000
            print(n)
            """),
            no_calls,
        )
    finally:
        box.close()
    grown_mb = (_meminfo_kb("SReclaimable") + _meminfo_kb("SUnreclaim") - before) // 1024
    # Kept by the kernel after the worker is gone, past its limit, and again for every step.
    assert grown_mb < limit_mb, f"{result.output.strip()} lookups left {grown_mb} MB of kernel memory"


@needs_jail
@pytest.mark.parametrize(
    "action",
    [
        "import mmap\nm = mmap.mmap(-1, 1 << 20, flags=mmap.MAP_PRIVATE)\nresult = m.madvise(12)",  # MADV_MERGEABLE
        "result = sc(157, 67, 1, 0, 0, 0)",  # prctl(PR_SET_MEMORY_MERGE): every mapping, now and later
    ],
)
def test_the_worker_cannot_opt_its_memory_into_ksm_merging(unrestricted, action):
    # With KSM running (`/sys/kernel/mm/ksm/run`), a merged page is shared with every other
    # process that holds the same bytes: the time of a write to it tells whether they do.
    report = attempt(unrestricted, action)
    assert report.startswith("DENIED"), report


@needs_jail
@pytest.mark.parametrize(
    "action",
    [
        "result = sc(438, 0, 0, 0)",  # pidfd_getfd
        "result = sc(440, 0, 0, 0, 0, 0)",  # process_madvise
        "result = sc(333, 0, 0, 0, 0, 0, 0)",  # io_pgetevents
        "result = sc(443, 0, 0, 0, 0)",  # quotactl_fd
        "result = sc(451, 0, 0, 0, 0)",  # cachestat: the page cache of a file, by number past 424
        "result = sc(459, 0, 0, 0, 0)",  # lsm_get_self_attr
        "result = sc(157, 57, 1, 0, 0, 0)",  # prctl(PR_SET_IO_FLUSHER): memory reserves for I/O
        "result = sc(157, 35, 8, 0, 0, 0)",  # prctl(PR_SET_MM, PR_SET_MM_ARG_START)
        "result = os.sched_setaffinity(0, {0})",
    ],
)
def test_the_newest_and_quota_taking_syscalls_stay_refused(unrestricted, action):
    report = attempt(unrestricted, action)
    assert report.startswith("DENIED"), report
