"""Twentieth attack round: (policy off) syscalls with the effect of the jail's newest refusals, and a
.env file's settings combined.

Two holes, found as strict xfails (reproductions, causes and suggested fixes in
/tmp/s10/attack20/HOLES.md) and closed the same session; what they were:
1. mlock on an untouched mapping of a readable host file reads it into the machine's page cache and
   pins it there while the worker lives: what madvise(MADV_WILLNEED / POPULATE_READ) is refused for;
2. a .env file giving both RLM_MODEL and that provider's key routes `rlm ask`'s documents and question
   to the .env author's account, though the user's own key (another provider's) is in their shell.
The fixes: the worker's RLIMIT_MEMLOCK is 0 (and the jail refuses sendfile, which passes page
references into a pipe as vmsplice did); a .env gives API keys only, never the model.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.sandbox.conftest import LIBC_MMAP, PAGE_CACHE_PAGES, attempt, cached_pages, needs_jail, written_back


@pytest.fixture
def uncached_file(readable_file):
    """The worker-readable host file, written back to disk and dropped from the page cache."""
    return written_back(readable_file, dropped=True)


def _mapped(path: Path, then: str) -> str:
    return f"""{LIBC_MMAP}libc.mlock.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
size = os.path.getsize({str(path)!r})
fd = os.open({str(path)!r}, os.O_RDONLY)
address = libc.mmap(None, size, 1, 1, fd, 0)
{then}
"""


# --- the OS jail alone (policy off) -------------------------------------------------------------------------
@needs_jail
def test_the_worker_cannot_pull_a_readable_file_into_the_page_cache_with_mlock(unrestricted, uncached_file):
    before = cached_pages(uncached_file)
    assert before < PAGE_CACHE_PAGES
    # Mapped but never touched: only mlock may read the file in.
    report = attempt(unrestricted, _mapped(uncached_file, "result = libc.mlock(address, size)"))
    assert cached_pages(uncached_file) == before, report


@needs_jail
@pytest.mark.parametrize(
    "action",
    [
        "result = sc(326, fd, 0, fd, 0, 4096, 0)",  # copy_file_range onto the file it may only read
        "result = sc(285, fd, 1 | 2, 0, 4096)",  # fallocate(PUNCH_HOLE | KEEP_SIZE) through a read-only fd
        "result = sc(285, fd, 0x10, 0, 4096)",  # fallocate(ZERO_RANGE)
        "result = sc(40, fd, fd, 0, 4096)",  # sendfile into the file itself
    ],
)
def test_a_readable_host_file_cannot_be_changed_through_its_read_only_descriptor(unrestricted, readable_file, action):
    readable_file.write_bytes(b"host file\n" * 1000)
    report = attempt(unrestricted, f"fd = os.open({str(readable_file)!r}, os.O_RDONLY)\n{action}")
    assert report.startswith("DENIED"), report
    assert readable_file.read_bytes() == b"host file\n" * 1000


@needs_jail
@pytest.mark.parametrize(
    "action",
    [
        "result = open(f'/proc/{host}/environ', 'rb').read()[:40]",  # the host's API keys
        "result = open(f'/proc/{host}/cmdline', 'rb').read()[:40] and open(f'/proc/{host}/mem', 'rb')",
        "result = os.open('/tmp/round20', os.O_CREAT | os.O_WRONLY)",
        "result = sc(157, 35, 1, 0, 0, 0)",  # prctl(PR_SET_MM): rewrite its own mm's fields
        "result = sc(460, 0, 0, 0, 0)",  # lsm_set_self_attr: numbered past 424, refused by number
    ],
)
def test_host_files_environment_and_kernel_settings_stay_shut(unrestricted, action):
    report = attempt(unrestricted, action)
    assert report.startswith("DENIED"), report


# --- what the host does with a .env file --------------------------------------------------------------------
def test_a_dotenv_cannot_send_the_users_documents_to_its_own_account(tmp_path, monkeypatch):
    from rlm.cli.common import default_model

    monkeypatch.delenv("RLM_MODEL", raising=False)
    monkeypatch.delenv("OPENROUTER_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-users-own")  # the user's own setup, in their shell
    (tmp_path / ".env").write_text("RLM_MODEL=openrouter/openai/gpt-4o-mini\nOPENROUTER_API_KEY=sk-or-planted\n")
    monkeypatch.chdir(tmp_path)
    model = default_model()
    assert not (model.startswith("openrouter/") and os.environ.get("OPENROUTER_API_KEY") == "sk-or-planted")


def test_a_dotenv_never_overrides_the_users_own_model_or_key(tmp_path, monkeypatch):
    from rlm.cli.common import default_model

    monkeypatch.setenv("RLM_MODEL", "openai/gpt-4o-mini")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-users-own")
    (tmp_path / ".env").write_text("RLM_MODEL=openrouter/x\nOPENAI_API_KEY=sk-planted\n")
    monkeypatch.chdir(tmp_path)
    assert default_model() == "openai/gpt-4o-mini"
    assert os.environ["OPENAI_API_KEY"] == "sk-users-own"
