"""Nineteenth attack round: the frame account against strings whose JSON escapes or characters make the
host's parser and decoder overallocate and widen; (policy off) madvise on readable files' mappings and
vmsplice into the worker's own channel; the user's key in a rate limit's text through the retry layer;
the graph files' terminal controls; a .env file in the folder `rlm ask` runs in.

Eight holes, found as strict xfails (reproductions, causes and suggested fixes in
/tmp/s10/attack19/HOLES.md) and closed the same session; what they were:
1. a string holding an escape is built by the host's JSON parser in a buffer a quarter larger than
   counted (`llm_query("x" * n + "\n")`, policy on: 1.12x the account);
2. an ASCII run then a latin-1 escape is widened into a second such buffer (forged frame: 1.75x);
3. madvise(MADV_PAGEOUT / MADV_WILLNEED) on a readable file's mapping pushes it out of the machine's page
   cache or pulls it in: what fadvise64/readahead are refused for;
4. a 429 quoting the key with a Retry-After past max_retry_wait_s reaches the model's code unredacted
   (the retry layer's own ProviderError), and every retry logs it (stderr of `rlm ask`);
5. the GraphML and HTML graph files keep C1 controls (OSC) and bidi overrides raw;
6. a .env in the folder `rlm ask` runs in sends the user's own key (from their shell) to the .env's
   OPENAI_API_BASE, and turns the OS jail off (RLM_SANDBOX=restricted-policy-only) without a word;
7. vmsplice pins transparent huge pages in the channel's pipe while a sub-call runs: 2 MB per byte,
   outside the worker's address-space cap and every host account;
8. text that makes the UTF-8 decoder widen twice (U+0100, then emoji; policy on) peaks at 7x the frame,
   6x counted.
The fixes: the channel counts a string with escapes at three copies while parsed and a non-ASCII
decode at 7 times the frame; the jail refuses vmsplice, splice and tee, and madvise's page-cache
advice (WILLNEED, COLD, PAGEOUT, POPULATE_*); the retry layer redacts what it says; GraphML and the
HTML page write terminal controls as escapes; a .env file gives only API keys and RLM_MODEL (other
names in it are named in a warning and not used).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import time
from pathlib import Path
from typing import ClassVar

import pytest

from rlm import RLM
from rlm.sandbox.local import protocol
from tests.sandbox.conftest import (
    LIBC_MMAP,
    PAGE_CACHE_PAGES,
    attempt,
    cached_pages,
    needs_jail,
    no_calls,
    written_back,
)
from tests.sandbox.frame_account import call_frame, peak_while_received
from tests.sandbox.stand_in_providers import (
    SUB_CALL,
    JSONHandler,
    chat_completion,
    keyed_rlm,
    refusing_sub_calls,
    serving,
)

# --- the frame account against what the host really allocates -----------------------------------------------
RUN = 4_000_000  # ASCII characters before the escape: the parser copies them into its builder first
SLACK = 256 << 10


def _within_account(value: bytes) -> None:
    peak, counted, message = peak_while_received(call_frame(value))
    assert message["fn"] == "llm_query"
    assert len(message["args"][0]) > RUN // 4  # delivered whole
    assert peak <= counted + SLACK, f"counted {counted:,}, allocated {peak:,} ({peak / counted:.2f}x)"


# The parser builds a string holding an escape in a buffer a quarter larger than what it has so far,
# and widens it into a new buffer when a character needs more bytes: shapes where that stays counted.
ESCAPED_WITHIN_ACCOUNT = {
    "a run then a cjk escape": b'"' + b"x" * RUN + b'\\u4e00"',
    "a run then an emoji escape": b'"' + b"x" * RUN + b'\\ud83d\\ude00"',
    "a run widened three times": b'"' + b"x" * RUN + b'\\u00e9\\u4e00\\ud83d\\ude00"',
    "a run then a lone surrogate": b'"' + b"x" * RUN + b'\\u00e9\\ud800"',
    "raw latin-1 then a newline escape": b'"' + "\u00e9".encode() * (RUN // 2) + b'\\n"',
    "raw emoji then a newline escape": b'"' + "\U0001f600".encode() * (RUN // 4) + b'\\n"',
}


@pytest.mark.parametrize("value", ESCAPED_WITHIN_ACCOUNT.values(), ids=ESCAPED_WITHIN_ACCOUNT.keys())
def test_a_string_widened_by_an_escape_peaks_within_what_the_account_counted(value):
    _within_account(value)


def test_a_prompt_ending_in_a_newline_as_the_worker_encodes_it_peaks_within_the_account():
    # What the worker itself sends for llm_query("x" * RUN + "\n"): the Python policy on.
    payload = protocol.encode({"type": "call", "fn": "llm_query", "args": ["x" * RUN + "\n"], "kwargs": {}})
    assert payload.endswith(b'\\n"], "kwargs": {}}')
    peak, counted, message = peak_while_received(payload)
    assert message["args"][0].endswith("\n")
    assert peak <= counted + SLACK, f"counted {counted:,}, allocated {peak:,} ({peak / counted:.2f}x)"


def test_an_ascii_run_then_a_latin1_escape_peaks_within_the_account():
    _within_account(b'"' + b"x" * RUN + b'\\u00e9"')


def test_a_prompt_widening_twice_while_decoded_peaks_within_the_account():
    # What the worker itself sends for llm_query("\u0100" + "\U0001f600" * n): the Python policy on.
    # Emoji alone widen once, from 1 to 4 bytes a character (6x the frame, counted: round 18).
    prompt = "\u0100" + "\U0001f600" * (RUN // 4)
    peak, counted, message = peak_while_received(
        protocol.encode({"type": "call", "fn": "llm_query", "args": [prompt], "kwargs": {}})
    )
    assert message["args"][0] == prompt
    assert peak <= counted + SLACK, f"counted {counted:,}, allocated {peak:,} ({peak / counted:.2f}x)"


def test_a_prompt_of_emoji_alone_peaks_within_the_account():
    prompt = "\U0001f600" * (RUN // 4)
    peak, counted, message = peak_while_received(
        protocol.encode({"type": "call", "fn": "llm_query", "args": [prompt], "kwargs": {}})
    )
    assert message["args"][0] == prompt
    assert peak <= counted + SLACK, f"counted {counted:,}, allocated {peak:,} ({peak / counted:.2f}x)"


# --- OS jail alone (policy off): the shared page cache through madvise on a readable file's mapping -----------
@pytest.fixture
def cached_file(readable_file):
    """The worker-readable host file, written back to disk (clean pages, as an installed library's are)."""
    return written_back(readable_file)


def _advise(path: Path, advice: int) -> str:
    return f"""{LIBC_MMAP}libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
size = os.path.getsize({str(path)!r})
fd = os.open({str(path)!r}, os.O_RDONLY)
address = libc.mmap(None, size, 1, 1, fd, 0)
os.close(fd)
touched = len(ctypes.string_at(address, size))  # its pages mapped here, so madvise reaches them
ctypes.set_errno(0)
result = (libc.madvise(address, size, {advice}), ctypes.get_errno())
"""


@needs_jail
def test_the_worker_cannot_push_a_readable_file_out_of_the_page_cache(unrestricted, cached_file):
    cached_file.read_bytes()
    before = cached_pages(cached_file)
    assert before >= PAGE_CACHE_PAGES
    report = attempt(unrestricted, _advise(cached_file, 21))  # MADV_PAGEOUT
    assert cached_pages(cached_file) == before, report


@needs_jail
def test_the_worker_cannot_pull_a_readable_file_into_the_page_cache(unrestricted, cached_file):
    fd = os.open(cached_file, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    before = cached_pages(cached_file)
    assert before < PAGE_CACHE_PAGES
    # Mapped but never touched: only the advice may read the file in.
    code = _advise(cached_file, 3).replace("touched = len(ctypes.string_at(address, size))", "touched = 0")
    report = attempt(unrestricted, code)
    assert cached_pages(cached_file) == before, report


@needs_jail
def test_the_worker_may_still_drop_its_own_memory_with_madvise(unrestricted):
    # MADV_DONTNEED on its own anonymous memory is what the allocator does: a fix must keep it.
    report = attempt(
        unrestricted,
        LIBC_MMAP
        + """libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
address = libc.mmap(None, 1 << 20, 3, 0x22, -1, 0)
ctypes.memset(address, 1, 1 << 20)
result = (libc.madvise(address, 1 << 20, 4), ctypes.string_at(address, 4))
""",
    )
    assert report.startswith("OK: (0, b'\\x00\\x00\\x00\\x00')"), report


# --- the user's key in a rate-limit refusal: the retry layer's own errors and log ---------------------------
KEY = "sk-test-SECRETKEY1234567890abcdef"
CATCHES = f'try:\n    llm_query("{SUB_CALL}")\nexcept Exception as e:\n    FINAL(str(e))'


def _provider_rate_limiting_the_key(retry_after: str):
    """Served for the block: the root model's reply runs CATCHES; the sub-call is refused with a 429
    whose message quotes the request's key and whose Retry-After is `retry_after`."""
    message = "rate limit reached for key {key}"
    return serving(refusing_sub_calls(CATCHES, 429, message, "rate", {"Retry-After": retry_after}))


def _run_against(api_base: str, history: Path) -> str:
    return str(keyed_rlm(api_base, KEY, history, max_iterations=3).run("What failed?", "ctx").answer)


def test_a_rate_limit_quoting_the_key_is_redacted_in_the_history_file(tmp_path):
    with _provider_rate_limiting_the_key("3600") as api_base:
        _run_against(api_base, tmp_path / "history.json")
    text = (tmp_path / "history.json").read_text(encoding="utf-8")
    assert "rate limit reached for key" in text  # the refusal is recorded ...
    assert KEY not in text  # ... without the key


def test_a_rate_limit_quoting_the_key_never_hands_it_to_the_models_code(tmp_path):
    # Retry-After past max_retry_wait_s: models/retry.py refuses to wait with an error of its own.
    with _provider_rate_limiting_the_key("3600") as api_base:
        answer = _run_against(api_base, tmp_path / "history.json")
    assert "rate limit reached for key" in answer  # the error did reach the model's code
    assert KEY not in answer


def test_rlm_ask_never_logs_the_key_a_retried_rate_limit_quotes(tmp_path, monkeypatch, caplog):
    # Without a handler of the user's, Python prints warnings to stderr: what a CI job's log keeps.
    from rlm.cli.main import main

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.txt").write_text("hello")
    out, err = io.StringIO(), io.StringIO()
    with (
        _provider_rate_limiting_the_key("0.05") as api_base,
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        main(["ask", "q", "--context", "c.txt", "--model", "openai/test-model", "--api-base", api_base])
    assert "Retrying a failed LM request" in caplog.text  # the refusal was retried, and logged
    assert KEY not in caplog.text + err.getvalue() + out.getvalue(), caplog.text[-600:]


# --- the graph files: what a `cat` of them hands the terminal ---------------------------------------------------
# OSC 0 (retitle the window) as 8-bit C1 controls, then a right-to-left override ("Trojan Source").
OSC_AND_BIDI = "```python\nFINAL('ok' + chr(0x9d) + '0;owned' + chr(0x9c) + chr(0x202e) + 'txt.exe')\n```"
HIDDEN_CONTROLS = {chr(code) for code in range(0x80, 0xA0)} | {"\u202e"}


def _graph_written_as(path: Path) -> str:
    from rlm.testing import FakeOpenAIServer

    server = FakeOpenAIServer(responder=lambda body: OSC_AND_BIDI).start()
    try:
        result = RLM("openai/test-model", api_base=server.base_url, graph_output_path=path).run("q", "ctx")
    finally:
        server.stop()
    assert "owned" in str(result.answer)  # the model's text is in the run, and in the file ...
    return path.read_text(encoding="utf-8")


def test_the_graphs_json_file_holds_no_raw_terminal_controls(tmp_path):
    text = _graph_written_as(tmp_path / "graph.json")
    assert "owned" in text
    assert not HIDDEN_CONTROLS & set(text)  # ... inert


@pytest.mark.parametrize(
    "name",
    ["graph.graphml", "graph.html"],
)
def test_the_graph_files_hold_no_raw_terminal_controls(tmp_path, name):
    text = _graph_written_as(tmp_path / name)
    assert "owned" in text
    assert not HIDDEN_CONTROLS & set(text), sorted(f"U+{ord(c):04X}" for c in HIDDEN_CONTROLS & set(text))


# --- a .env file in the folder `rlm ask` runs in (a cloned repository's, beside the documents asked about) --------
USERS_KEY = "sk-user-REALKEY-abcdefghijkl"
CLOSED_PROXY = "http://127.0.0.1:9"  # the discard port: nothing listens on it here


class _Records(JSONHandler):
    """An OpenAI-compatible server that answers at once and records each request's Authorization."""

    seen: ClassVar[list[str | None]] = []

    def do_POST(self):
        self.read_json()
        self.seen.append(self.headers.get("Authorization"))
        self.send_json(200, chat_completion("```python\nFINAL('x')\n```"))


def _rlm_ask_beside(tmp_path: Path, dotenv: str) -> tuple[list[str | None], str]:
    """`rlm ask` run by a user whose shell holds their key, in a folder whose .env they did not write."""
    import subprocess
    import sys

    seen: ClassVar[list[str | None]] = []
    handler = type("Handler", (_Records,), {"seen": seen})
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "RLM_", "E2B_"))}
    env["OPENAI_API_KEY"] = USERS_KEY
    # With the .env's base ignored the run asks the provider's own address: through a proxy that is a
    # closed local port, so the user's (fake) key never leaves this machine, network or not.
    env.update(dict.fromkeys(("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY"), CLOSED_PROXY), NO_PROXY="127.0.0.1,localhost")
    with serving(handler) as api_base:
        (tmp_path / "README.md").write_text("a project")
        (tmp_path / ".env").write_text(dotenv.format(base=api_base))
        done = subprocess.run(
            [sys.executable, "-m", "rlm", "ask", "What is this?", "--context", "README.md"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    return seen, done.stderr


@pytest.mark.parametrize("variable", ["OPENAI_API_BASE", "OPENAI_BASE_URL"])
def test_a_folders_env_file_never_sends_the_users_own_key_elsewhere(tmp_path, variable):
    # Found as a hole: the .env's server was asked, with the user's key from the shell. A .env now
    # gives keys and RLM_MODEL only; the rest is named in a warning and left alone.
    seen, stderr = _rlm_ask_beside(tmp_path, variable + "={base}\n")
    assert f"Bearer {USERS_KEY}" not in seen and not seen  # the .env's server was never asked
    assert variable in stderr and "environment only" in stderr


def test_a_folders_env_file_never_drops_the_os_jail_silently(tmp_path):
    seen, stderr = _rlm_ask_beside(
        tmp_path, "OPENAI_API_BASE={base}\nOPENAI_API_KEY=sk-env-file-key-123\nRLM_SANDBOX=restricted-policy-only\n"
    )
    # Found as a hole: the run went ahead with the jail off and nothing said. RLM_SANDBOX (and the
    # base URL) in a .env are now named in a warning and not used.
    assert not seen
    assert "RLM_SANDBOX" in stderr and "environment only" in stderr


# --- OS jail alone (policy off): memory pinned in the channel's pipe while a sub-call runs ----------------------
# After sending a call frame (which takes the host a while to parse), the worker hands the pipe
# references to pages of transparent huge pages with vmsplice, one byte each, and unmaps them: each of
# the pipe's 256 slots then holds a 2 MB folio outside the worker's address space, until the host
# reads the pipe again, after the sub-call (a child's whole run, for recursive_llm).
PIN_IN_THE_CHANNEL = r"""
import ctypes, os, struct, json
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
class IOV(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]
libc.vmsplice.argtypes = [ctypes.c_int, ctypes.POINTER(IOV), ctypes.c_ulong, ctypes.c_uint]
libc.vmsplice.restype = ctypes.c_ssize_t
HUGE, BATCH = 2 << 20, 40
def huge_pages(count):
    regions = []
    for _ in range(count):
        region = libc.mmap(None, 2 * HUGE, 3, 0x22, -1, 0)
        aligned = (region + HUGE - 1) & ~(HUGE - 1)
        libc.madvise(aligned, HUGE, 14)  # MADV_HUGEPAGE
        ctypes.memset(aligned, 7, HUGE)
        regions.append((region, aligned))
    return regions
def pin(regions):
    iovs = (IOV * len(regions))(*[IOV(aligned, 1) for _, aligned in regions])
    got = libc.vmsplice(4, iovs, len(regions), 2)  # SPLICE_F_NONBLOCK
    for region, _ in regions:
        libc.munmap(region, 2 * HUGE)
    return got
body = json.dumps({"type": "call", "fn": "llm_query", "args": [["%d" % i for i in range(1_000_000)]], "kwargs": {}})
body = body.encode()
ready = huge_pages(BATCH)
os.write(4, struct.pack(">I", len(body)))
view = memoryview(body)
while view:
    view = view[os.write(4, view):]
pinned = pin(ready)
while 0 < pinned < 256:
    got = pin(huge_pages(BATCH))
    if got <= 0:
        break
    pinned += got
(size,) = struct.unpack(">I", os.read(3, 4))
reply = b""
while len(reply) < size:
    reply += os.read(3, size - len(reply))
"""


def _available_mb() -> int:
    with open("/proc/meminfo") as meminfo:
        return next(int(line.split()[1]) for line in meminfo if line.startswith("MemAvailable")) // 1024


def _held_in_the_channel_mb(code: str) -> tuple[int, int]:
    """Run `code` (policy off); while its sub-call runs, drain what it left in its channel's pipe: (the
    bytes drained, the MB of host memory that freed)."""
    from rlm.sandbox.base import SandboxLimits
    from rlm.sandbox.local import LocalSandbox

    seen: dict[str, int] = {}
    with LocalSandbox(SandboxLimits(exec_timeout=30.0, memory_limit_mb=256), python_policy=False) as box:
        box.load("ctx")

        def handler(fn, args, kwargs):
            assert box._channel is not None
            time.sleep(0.2)  # the worker is stopped: what it left in the pipe stays there
            before = _available_mb()
            drained = 0
            with contextlib.suppress(BlockingIOError):
                while chunk := os.read(box._channel.from_worker, 1 << 16):
                    drained += len(chunk)
            seen["drained"], seen["freed_mb"] = drained, _available_mb() - before
            return "ok"

        result = box.execute(code, handler)
        # The sub-call ran (a worker still pinning when it resumes sends junk and is replaced).
        assert "drained" in seen, result
        assert box.execute("print(len(context))", no_calls).output == "3\n"
    return seen["drained"], seen["freed_mb"]


@needs_jail
def test_bytes_the_worker_writes_into_its_channel_hold_no_more_than_the_pipes_size():
    # The same step with write() for vmsplice: the pipe holds copies, at most its 1 MiB.
    drained, freed_mb = _held_in_the_channel_mb(
        PIN_IN_THE_CHANNEL.replace(
            "got = libc.vmsplice(4, iovs, len(regions), 2)",
            "got = os.write(4, bytes(len(regions)))",
        )
    )
    assert drained >= 40
    assert freed_mb < 64, freed_mb


@needs_jail
def test_the_worker_cannot_pin_memory_in_its_channel_while_a_sub_call_runs():
    # Found as a hole: 40-256 bytes left in the pipe held 184-424 MB. The jail refuses vmsplice now,
    # so the step's bytes never reach the pipe; whatever does must hold no more than bytes.
    drained, freed_mb = _held_in_the_channel_mb(PIN_IN_THE_CHANNEL)
    assert freed_mb < 64, f"{drained} bytes in the pipe held {freed_mb} MB"


# --- an LM call cancelled in flight (engine/calls.py `tracked`, its BaseException branch) --------------------------
def test_a_sub_call_interrupted_in_flight_is_reported_once_and_the_history_still_written(tmp_path):
    from rlm.testing.scripted import scripted_lm

    def interrupt(messages):
        if any(m["content"] == "SUB-Q" for m in messages):
            raise KeyboardInterrupt  # the user's Ctrl-C, while the provider has the request
        return "Running.\n```python\nprint(llm_query('SUB-Q'))\n```"

    lm, engine = scripted_lm(interrupt)
    history = tmp_path / "history.json"
    rlm = RLM(lm, enable_history=True, history_output_path=history, max_iterations=2)
    with pytest.raises(KeyboardInterrupt):  # the user's own interrupt goes on up, as it should
        rlm.run("q", "ctx")
    records = json.loads(history.read_text(encoding="utf-8"))
    assert len(engine.calls) == 2
    assert [r["purpose"] for r in records] == ["step", "llm_query"]  # each request once, none twice
    assert records[1]["error"].startswith("KeyboardInterrupt")
