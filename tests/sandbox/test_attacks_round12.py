"""Twelfth attack round: the frame account's new count (host_memory.parsed_bytes/json_values), the
E2B reader's head-and-tail output and its account, the OS jail alone against kernel memory and
per-user quotas, a cancelled node's clean-up, sessions and batch items.

Seven holes were found (strict xfails first; reproductions, causes and suggested fixes in the
round's HOLES.md, /tmp/s9/attack12/), all closed at their cause the same session: an ASCII frame
whose JSON escapes decode to astral characters counted at a quarter of what it builds (escapes past
Latin-1 now count at 4 bytes a character); counting a frame walked its strings in Python, a 2 s step
holding the host for half a minute (one regex pass now); the E2B reader rebuilt its output tail on
every line under a lock the step's deadline waits on (the tail is trimmed in amortized linear time,
lines without a marker are written in one piece, and a stopped step's output is dropped); Landlock
rules were kernel memory outside RLIMIT_AS (Landlock's calls are refused once the jail is entered);
JSON escapes carried lone surrogates past the channel and ended the run with a ProviderError
(sandbox messages are made UTF-8-able as they arrive); a batch item id holding a lone surrogate
ended the whole batch (refused when the items are read). Page tables are kernel memory outside
RLIMIT_AS too, and no syscall filter tells a sparse mapping from ld.so's: a worker whose page tables
pass 32 MB after a step is replaced, which bounds how long they are held, not their peak in a step.
"""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap

import pytest

from rlm import RLM
from rlm.batch import batch
from rlm.cli.main import main
from rlm.errors import ConfigurationError, RLMError
from rlm.sandbox import registry
from rlm.sandbox.base import SandboxLimits
from rlm.sandbox.host_memory import HostFrameBudget, parsed_bytes, run_budget_bytes
from rlm.sandbox.local import LocalSandbox, jail
from rlm.testing import FakeOpenAIServer, scripted_lm
from tests.sandbox.conftest import (
    LIBC_MMAP,
    RAW,
    attempt,
    code,
    finishes_within,
    no_calls,
    status_mb,
    worker_pid,
    x86_64_only,
)

pytestmark = pytest.mark.skipif(not jail.probe().available, reason=f"no OS jail here: {jail.probe().problem}")


def _forged_call(body: bytes) -> str:
    """Policy off: the worker writes its own call frame on its channel (fd 4) and reads the reply (fd 3)."""
    return textwrap.dedent(
        f"""
        import os, struct
        body = {body!r}
        os.write(4, struct.pack('>I', len(body)) + body)
        (size,) = struct.unpack('>I', os.read(3, 4))
        reply = b''
        while len(reply) < size:
            reply += os.read(3, size - len(reply))
        print('answered', len(reply))
        """
    )


def _counted_and_parsed(body: bytes) -> dict[str, int]:
    budget = HostFrameBudget(run_budget_bytes(len("ctx"), 1))
    seen: dict[str, int] = {}

    def measure(fn, args, kwargs):
        seen["parsed"] = sys.getsizeof(args[0])
        seen["counted"] = budget.held_bytes
        return "ok"

    limits = SandboxLimits(exec_timeout=20.0, memory_limit_mb=256, frame_budget=budget)
    with LocalSandbox(limits, python_policy=False) as box:
        box.load("ctx")
        result = box.execute(_forged_call(body), measure)
    assert result.error is None and result.output.startswith("answered"), result
    assert budget.held_bytes == 0
    return seen


# --- 1. the frame account's count --------------------------------------------------------------------------
def test_an_ascii_frame_of_escaped_astral_text_counts_at_what_it_decodes_to():
    # 5 MB of ASCII with one "\\ud83d\\ude00" is counted at 5 MB; parsing builds a 20 MB str.
    body = b'{"type": "call", "fn": "llm_query", "args": ["' + b"a" * 5_000_000 + b'\\ud83d\\ude00"], "kwargs": {}}'
    seen = _counted_and_parsed(body)
    assert seen["counted"] >= seen["parsed"], seen


def test_an_ascii_frame_of_narrowing_escapes_counts_at_least_what_it_builds():
    # Escapes that decode to Latin-1 (one byte a character) shrink the text: the count stays above it.
    body = b'{"type": "call", "fn": "llm_query", "args": ["' + b"\\u00e9" * 500_000 + b'"], "kwargs": {}}'
    seen = _counted_and_parsed(body)
    assert seen["counted"] >= seen["parsed"], seen


@pytest.mark.parametrize(
    "text",
    ['"', '"\\', '["a", "b', '"\\ud800', '"\x00"', '"\\x41"', '[",' * 1000, '{"a": "\\u12"}', '"' + "," * 200],
    ids=[
        "quote",
        "backslash",
        "open-string",
        "lone-escape",
        "control",
        "bad-escape",
        "open-strings",
        "short-u",
        "commas",
    ],
)
def test_counting_malformed_frames_raises_only_value_error(text):
    # The channel turns ValueError into a ChannelError; anything else would end the run.
    try:
        counted = parsed_bytes(text)
    except ValueError:
        return
    assert counted >= len(text)


def test_counting_a_frame_of_many_strings_costs_about_what_parsing_it_does():
    # 15 million empty strings (a 45 MB frame, under the 64 MiB cap): json.loads takes ~0.3 s and one
    # C pass that skips strings (a possessive regex) ~3 s; the Python walk takes 30-70 s here.
    script = (
        "from rlm.sandbox.host_memory import parsed_bytes\n"
        "text = '[' + '\"\",' * 15_000_000 + '\"\"]'\n"
        "assert parsed_bytes(text) >= 64 * 15_000_000\n"
    )
    assert finishes_within(script, 15)


# --- 2. the E2B reader and the run's account ---------------------------------------------------------------
@pytest.fixture
def e2b_accounts(fake_e2b, monkeypatch):
    """Every E2B sandbox's account, as the engine hands it to the sandbox."""
    accounts: list[HostFrameBudget] = []
    make = registry._FACTORIES["e2b"]

    def recording(limits: SandboxLimits):
        accounts.append(limits.frame_budget)
        return make(limits)

    monkeypatch.setitem(registry._FACTORIES, "e2b", recording)
    return accounts


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the fake's reader, cut off
def test_e2b_call_markers_still_queued_at_the_steps_end_are_given_back(e2b_accounts):
    # Forged calls printed in a loop that never reads a reply: the step's limit cuts it with calls queued.
    flood = code(
        "import json, sys, time, uuid\n"
        "def call():\n"
        "    return '\\x1eRLM_CALL ' + json.dumps({'id': uuid.uuid4().hex, 'fn': 'llm_query', 'args': ['p' * 999]})\n"
        "while True:\n"
        "    sys.stdout.write(''.join(call() + '\\n' for _ in range(20)))\n"
        "    sys.stdout.flush()\n"
        "    time.sleep(0.01)"
    )
    lm, _ = scripted_lm([flood, code("print('second step ran')"), code("FINAL('done')")])
    sub, _ = scripted_lm(lambda messages: "sub answer", model="scripted/sub")
    rlm = RLM(model=lm, recursive_model=sub, sandbox="e2b", exec_timeout=2.0, max_llm_calls=100_000)
    result = rlm.run("q", "ctx")
    # Whichever limit ends the step (its time, or the 8 MB of output when the host answers the calls
    # fast: the clock stops while it does), calls are still queued then, and they are given back.
    ended_by = result.trajectory[0].error or ""
    assert result.answer == "done" and ("TimeoutError" in ended_by or "OutputLimit" in ended_by), ended_by
    assert result.trajectory[1].output.strip() == "second step ran"
    assert e2b_accounts and all(account.held_bytes == 0 for account in e2b_accounts)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_e2b_one_flush_past_the_step_cap_stops_the_step_and_gives_its_bytes_back(e2b_accounts):
    flood = code("import sys\nsys.stdout.write('y' * 9_000_000 + '\\n')\nsys.stdout.flush()\nwhile True:\n    pass")
    lm, _ = scripted_lm([flood, code("print(len(context))"), code("FINAL('done')")])
    result = RLM(model=lm, sandbox="e2b", exec_timeout=5.0).run("q", "ctx")
    assert result.answer == "done" and "OutputLimit" in (result.trajectory[0].error or "")
    assert result.trajectory[1].output.strip() == "3"
    assert all(account.held_bytes == 0 for account in e2b_accounts)


def test_the_e2b_reader_takes_time_linear_in_the_lines_it_is_sent():
    # Three million empty lines in one message (3 MB, under the step's 8 MB cap) with
    # max_output_chars=1,000,000: ~6 s of per-line work, plus a 1 MB copy a line past the head.
    script = (
        "from rlm.sandbox.e2b.bridge import OutputReader\n"
        "reader = OutputReader(lambda call, held: None, output_limit=1_000_000)\n"
        "reader.on_stdout('\\n' * 3_000_000)\n"
        "assert reader.text().count('\\n') >= 2_000_000\n"
    )
    assert finishes_within(script, 20)


# --- 3. the OS jail alone: kernel memory and per-user quotas ----------------------------------------------
SPARSE_PAGES = f"""{LIBC_MMAP}made = 0
for i in range(60_000):  # one page every 1 GB, from 1 TB up: each fault builds a PTE and a PMD page
    got = libc.mmap((1 << 40) + i * (1 << 30), 4096, 3, 0x22 | 0x100000, -1, 0)
    if got in (None, ctypes.c_void_p(-1).value):
        break
    ctypes.c_char.from_address(got).value = b'x'
    made += 1
result = made
"""


@x86_64_only
def test_a_worker_whose_page_tables_pass_the_bound_is_replaced_after_its_step():
    # Hole 4: 60,000 pages (234 MB of a 256 MB cap) built 470 MB of page tables, held for as long as
    # the worker lived (a tree's 16 workers, 8 GB). No syscall filter tells such mappings from ld.so's,
    # so the host now reads the worker's page tables after each step and replaces a worker past
    # 32 MB: they are held for one step at most. Within that step they still reach ~0.5 GB
    # (docs/SECURITY.md, "What is not protected").
    with LocalSandbox(SandboxLimits(exec_timeout=30.0, memory_limit_mb=256), python_policy=False) as box:
        box.load("ctx")
        result = box.execute(textwrap.dedent(RAW + SPARSE_PAGES), no_calls)
        page_tables = status_mb(worker_pid(box), "VmPTE")
        after = box.execute("print(len(context))", no_calls)
    assert result.restarted and "page tables" in (result.error or ""), result
    assert page_tables < 32 and after.output == "3\n"


LANDLOCK_RULES = """
class Attr(ctypes.Structure):
    _fields_ = [("fs", ctypes.c_uint64), ("net", ctypes.c_uint64), ("scoped", ctypes.c_uint64)]
class Beneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed", ctypes.c_uint64), ("fd", ctypes.c_int32)]
attr = Attr(1, 0, 0)
paths, stack = [], [os.path.dirname(os.__file__)]
while stack and len(paths) < 60_000:
    folder = stack.pop()
    try:
        for entry in os.scandir(folder):
            paths.append(entry.path)
            if entry.is_dir(follow_symlinks=False):
                stack.append(entry.path)
    except OSError:
        pass
rulesets, rules = [], 0
try:
    for _ in range(3):
        rulesets.append(sc(444, ctypes.byref(attr), ctypes.sizeof(attr), 0))  # landlock_create_ruleset
        for path in paths:
            try:
                fd = os.open(path, os.O_PATH | os.O_NOFOLLOW)
            except OSError:
                continue
            try:
                sc(445, rulesets[-1], 1, ctypes.byref(Beneath(1, fd)), 0)  # landlock_add_rule
                rules += 1
            finally:
                os.close(fd)
finally:
    for ruleset in rulesets:
        os.close(ruleset)
result = rules
"""


@x86_64_only
def test_the_worker_cannot_hold_landlock_rules_by_the_hundred_thousand(unrestricted):
    # Seen: ~66 bytes of unreclaimable slab a rule; 56 rulesets (the descriptor limit) of the standard
    # library's ~60,000 names hold ~3.3 million rules, ~220 MB a worker, none of it in its cap.
    outcome = attempt(unrestricted, LANDLOCK_RULES)
    assert outcome.startswith("DENIED") or int(outcome.split(":", 1)[1]) < 100_000, outcome


@x86_64_only
@pytest.mark.parametrize(
    "action",
    [
        "result = fcntl.fcntl(4, 1031, 64 << 20)",  # F_SETPIPE_SZ on its channel, past pipe-max-size
        "fd = os.memfd_create('x')\nresult = os.ftruncate(fd, 64 << 20)",  # shmem sized without writing
        "cookie = ctypes.c_ulong(0)\nresult = sc(157, 62, 0, host, 0, ctypes.byref(cookie))",  # PR_SCHED_CORE_GET
        "result = sc(157, 62, 1, host, 0, 0)",  # PR_SCHED_CORE_CREATE for the host
        "result = sc(252, 3, 0)",  # ioprio_get for the whole user
        "result = sc(248, ctypes.c_char_p(b'user'), ctypes.c_char_p(b'k'), buf, 8, -4)",  # add_key to @u
    ],
    ids=["setpipe-64m", "memfd-ftruncate", "sched-core-get-host", "sched-core-create-host", "ioprio-user", "add-key"],
)
def test_quota_and_kernel_memory_doors_stay_shut(unrestricted, action):
    assert attempt(unrestricted, action).startswith("DENIED"), action


# --- 5 (lone surrogates): escapes in a frame past the channel's replacement ------------------------------
FORGED_RESULT = r"""
import os, struct
body = b'{"type": "result", "output": "rows: 12 \\udc9b", "error": null, "final": null}'
os.write(4, struct.pack('>I', len(body)) + body)
while True:
    pass
"""


def test_a_lone_surrogate_escaped_in_a_worker_frame_never_ends_the_run(monkeypatch):
    monkeypatch.setitem(registry._FACTORIES, "restricted", lambda limits: LocalSandbox(limits, python_policy=False))
    replies = [code(textwrap.dedent(FORGED_RESULT)), code("FINAL('done')")]
    server = FakeOpenAIServer(lambda body: replies.pop(0) if replies else code("FINAL('done')")).start()
    rlm = RLM(model="openai/test-model", api_base=server.base_url, api_key="test", exec_timeout=3.0)
    try:
        try:
            result = rlm.run("q", "ctx")
        except RLMError as exc:
            pytest.fail(f"run() raised {type(exc).__name__}: {str(exc)[:200]}")
    finally:
        server.stop()
    assert result.answer == "done"


# --- 4. a cancelled node, batch item timeouts, sessions ----------------------------------------------------
def test_a_batch_item_past_its_timeout_frees_its_slot_for_the_next_item(tmp_path):
    # The first item's step spins far past item_timeout; it is recorded as a timeout and the next
    # item, on the same single slot (concurrency=1), gets its own working sandbox.
    spin = code("n = 0\nwhile True:\n    n += 1")

    def respond(body):
        text = json.dumps(body["messages"])
        if "spin-item" in text:
            return spin
        return code("FINAL(str(len(context)))")

    server = FakeOpenAIServer(respond).start()
    items = [
        {"id": "spins", "query": "spin-item", "context": "ctx"},
        {"id": "after", "query": "how long", "context": "four"},
    ]
    settings = {"model": "openai/test-model", "api_base": server.base_url, "api_key": "test", "exec_timeout": 30.0}
    try:
        rows = {r.id: r for r in batch(items, out=tmp_path / "r.jsonl", concurrency=1, item_timeout=2.0, **settings)}
    finally:
        server.stop()
    assert rows["spins"].error_class == "TimeoutError", rows["spins"]
    assert rows["after"].error_class is None and rows["after"].answer == "4", rows["after"]


def test_a_sessions_account_is_empty_between_questions():
    # A question whose step sends a 20 MB sub-call (read, counted, refused by sub_prompt_chars): its
    # frame is given back when the call is answered, so the next question has the whole account.
    steps = [
        code("print(len(llm_query('b' * 20_000_000)))"),
        code("FINAL('one')"),
        code("print(len(llm_query('c' * 20_000_000)))"),
        code("FINAL('two')"),
    ]
    lm, _ = scripted_lm(lambda messages: steps.pop(0) if steps else code("FINAL('x')"))
    sub, _ = scripted_lm(lambda messages: "ok", model="scripted/sub")
    with RLM(model=lm, recursive_model=sub, exec_timeout=20.0).session("the context") as session:
        first = session.run("one")
        held_between = session._frame_budget.held_bytes
        second = session.run("two")
        held_after = session._frame_budget.held_bytes
    assert first.answer == "one" and second.answer == "two"
    for question in (first, second):  # the frame fitted the account; the host's own limit refused the call
        assert "sub_prompt_chars" in (question.trajectory[0].error or ""), question.trajectory[0]
    assert held_between == 0 and held_after == 0


def test_forged_call_frames_leave_the_account_empty():
    # Policy off: a call frame answered, then one past the account; nothing stays counted after either.
    budget = HostFrameBudget(1 << 20)
    limits = SandboxLimits(exec_timeout=5.0, memory_limit_mb=256, frame_budget=budget)
    with LocalSandbox(limits, python_policy=False) as box:
        box.load("ctx")
        first = box.execute(_forged_call(b'{"type": "call", "fn": "llm_query", "args": ["x"], "kwargs": {}}'), no_calls)
        assert first.error is None and first.output.startswith("answered"), first
        assert budget.held_bytes == 0
        oversized = box.execute(
            _forged_call(b'{"type": "call", "fn": "f", "args": ["' + b"z" * 2_000_000 + b'"]}'), no_calls
        )
        assert oversized.restarted and "bytes the host keeps" in (oversized.error or ""), oversized
        assert budget.held_bytes == 0
        assert box.execute("print(len(context))", no_calls).output == "3\n"


def test_an_item_id_with_a_lone_surrogate_is_refused_when_the_items_are_read(tmp_path, capsys):
    # Hole 7 (closed): "\ud800" in an id ended the whole batch midway with a UnicodeEncodeError (the
    # item's file names). Such an id is now refused with the other malformed ids, before any item runs.
    items = tmp_path / "items.jsonl"
    items.write_text(
        '{"id": "later", "query": "q", "context": "c"}\n{"id": "evil-\\ud800", "query": "q", "context": "c"}\n'
    )
    with pytest.raises(ConfigurationError, match=r"line 2.*lone surrogate"):
        list(batch(str(items), out=tmp_path / "r.jsonl", model="openai/test-model", api_key="test"))
    assert not (tmp_path / "r.jsonl").exists() or (tmp_path / "r.jsonl").read_text() == ""
    status = main(["batch", str(items), "--out", str(tmp_path / "r2.jsonl"), "--model", "openai/test-model"])
    shown = capsys.readouterr()
    assert status == 2 and "lone surrogate" in shown.err and "Traceback" not in shown.err


# --- 4. asyncio.run's shutdown with a run or a session question still in its step -------------------------
SPIN = code("n = 0\nwhile True:\n    n += 1")


def test_asyncio_run_ending_mid_step_stops_the_runs_worker(monkeypatch):
    # The task is left pending: asyncio.run cancels it at its end, and the clean-up runs to its end.
    boxes: list[LocalSandbox] = []

    def make(limits: SandboxLimits) -> LocalSandbox:
        boxes.append(LocalSandbox(limits))
        return boxes[-1]

    monkeypatch.setitem(registry._FACTORIES, "restricted", make)
    lm, _ = scripted_lm([SPIN, code("FINAL('x')")])
    rlm = RLM(model=lm, sandbox="restricted", exec_timeout=30.0)
    pending: list[asyncio.Task] = []

    async def leave_it_running() -> None:
        pending.append(asyncio.create_task(rlm.arun("q", "ctx")))
        await asyncio.sleep(1.5)

    asyncio.run(leave_it_running())
    assert len(boxes) == 1 and boxes[0]._process is None  # the worker was stopped and retired


def test_asyncio_run_ending_mid_session_question_leaves_the_session_usable():
    replies = [SPIN, code("print('second question ran', 6 * 7)"), code("FINAL('two')")]
    lm, _ = scripted_lm(lambda messages: replies.pop(0) if replies else code("FINAL('x')"))
    session = RLM(model=lm, sandbox="restricted", exec_timeout=3.0, max_iterations=2).session("ctx")
    pending: list[asyncio.Task] = []
    try:

        async def leave_it_running() -> None:
            pending.append(asyncio.create_task(session.arun("one")))
            await asyncio.sleep(1.0)

        asyncio.run(leave_it_running())  # waits for the question's step to end by its own limit
        second = session.run("two")
    finally:
        session.close()
    assert second.trajectory[0].error is None and "second question ran 42" in second.trajectory[0].output
