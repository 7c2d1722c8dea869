"""Eleventh attack round: the OS jail alone (policy off) against per-user kernel quotas, kernel
memory outside the address-space cap and the stop/continue rhythm; the host's frame account against
what parsing a frame builds; and, policy on, stdlib callers handed the guarded builtins.

Three holes were open when this round was written (strict xfails then; reproductions, causes and
suggested fixes in the round's HOLES.md, /tmp/s8/attack11/), all closed the next session: POSIX
timers the worker creates were charged to its user's RLIMIT_SIGPENDING, which it shares with the
host's user (the jail now refuses timer_create, and the worker's RLIMIT_SIGPENDING is 64); epoll
watches were kernel memory outside the worker's address-space cap on the user's
`max_user_watches` (epoll_create is refused, and RLIMIT_NOFILE is 64); and a frame counted at its
size against the run's account became ten to fourteen times that in Python objects when parsed
(frames now count at what parsing builds: 64 bytes a JSON value besides the text).
"""

from __future__ import annotations

import sys
import textwrap

import pytest

from rlm.sandbox.base import SandboxLimits
from rlm.sandbox.host_memory import HostFrameBudget
from rlm.sandbox.local import LocalSandbox, jail
from tests.sandbox.conftest import assert_refused_and_box_intact, attempt, no_calls, x86_64_only

pytestmark = pytest.mark.skipif(not jail.probe().available, reason=f"no OS jail here: {jail.probe().problem}")


# --- per-user kernel quotas and kernel memory (policy off) -----------------------------------------------
TIMERS = """
sev = struct.pack('iii', 0, 14, 1) + bytes(52)  # SIGEV_NONE: the timer signals nobody
made = []
try:
    for _ in range(1000):
        tid = ctypes.c_int(0)
        sc(222, 1, ctypes.c_char_p(sev), ctypes.byref(tid))  # timer_create(CLOCK_MONOTONIC)
        made.append(tid.value)
finally:
    for tid in made:
        sc(226, tid)  # timer_delete
result = len(made)
"""


@x86_64_only
def test_the_worker_cannot_hold_posix_timers_charged_to_the_hosts_user(unrestricted):
    # Each timer takes one of the user's pending-signal slots (96,364 here, shared with every process of
    # the host's user, root's in CI): a worker holding them all made the host's own timer_create fail.
    outcome = attempt(unrestricted, TIMERS)
    assert outcome.startswith("DENIED") or outcome == "OK: 0\n", outcome


EPOLL_WATCHES = """
import select
held, watches = [], 0
try:
    targets = [os.eventfd(0) for _ in range(1000)]
    held.extend(targets)
    for _ in range(100):
        ep = select.epoll()
        held.append(ep)
        for fd in targets:
            ep.register(fd, select.EPOLLIN)
            watches += 1
except OSError:
    pass
finally:
    for item in held:
        item.close() if hasattr(item, 'close') else os.close(item)
result = watches
"""


def test_the_worker_cannot_hold_a_hundred_thousand_epoll_watches(unrestricted):
    # 100,000 watches are 12.8 MB of kernel slab outside RLIMIT_AS; one step held 1,000,000 (128 MB),
    # and 20,000 descriptors allow 100,000,000, past the machine's max_user_watches for the host's user.
    outcome = attempt(unrestricted, EPOLL_WATCHES)
    assert outcome.startswith("OK:") and int(outcome.split(":", 1)[1]) < 100_000, outcome


@x86_64_only
@pytest.mark.parametrize(
    "action",
    [
        "result = sc(447, 0)",  # memfd_secret: memory the kernel hides from itself
        "result = sc(451, os.open(os.__file__, 0), 0, 0, ctypes.create_string_buffer(64), 0)",  # cachestat
        "result = sc(157, 35, 1, 0, 0, 0)",  # PR_SET_MM: rewrite its own memory map's bounds
        "import mmap\nm = mmap.mmap(-1, 4096, flags=mmap.MAP_PRIVATE)\nresult = m.madvise(100)",  # MADV_HWPOISON
        "result = sc(149, 0, 64 << 20)",  # mlock 64 MB: past RLIMIT_MEMLOCK
        "result = sc(151, 3)",  # mlockall(MCL_CURRENT | MCL_FUTURE)
    ],
    ids=["memfd-secret", "cachestat", "pr-set-mm", "madv-hwpoison", "mlock-64m", "mlockall"],
)
def test_memory_and_page_cache_doors_stay_shut(unrestricted, action):
    assert attempt(unrestricted, action).startswith("DENIED"), action


# --- the stop/continue rhythm (policy off) ---------------------------------------------------------------
FORGED_RESULT_THEN_SPIN = """
import json, os, struct
frame = json.dumps({"type": "result", "output": "forged\\n", "error": None, "final": None}).encode()
os.write(4, struct.pack('>I', len(frame)) + frame)  # the step's answer, sent before the step ends
while True:  # ... which goes on, through every TimeoutError
    try:
        while True:
            pass
    except BaseException:
        pass
"""


def test_a_step_that_answers_early_and_runs_on_costs_the_next_step_only():
    # The host takes the forged answer and stops the worker; continued for the next request, it is
    # still spinning and never reads it: that step times out, the worker is replaced, the next works.
    with LocalSandbox(SandboxLimits(exec_timeout=1.0), python_policy=False) as box:
        box.load("context")
        forged = box.execute(textwrap.dedent(FORGED_RESULT_THEN_SPIN), no_calls)
        assert forged.output == "forged\n" and not forged.restarted
        lost = box.execute("print(len(context))", no_calls)
        assert lost.restarted and lost.error.startswith("TimeoutError"), lost
        assert box.execute("print(len(context))", no_calls).output == "7\n"


# --- the run's frame account against what parsing builds (policy on) -------------------------------------
def _parse_a_frame_of_short_strings(budget: HostFrameBudget):
    held: dict[str, int] = {}

    def measure(fn, args, kwargs):
        prompts = args[0]  # what parsing built: the list, and a str object for each "ab"
        held["parsed"] = sys.getsizeof(prompts) + sum(sys.getsizeof(p) for p in prompts)
        held["counted"] = budget.held_bytes
        return ["x"]

    limits = SandboxLimits(exec_timeout=20.0, memory_limit_mb=512, frame_budget=budget)
    with LocalSandbox(limits) as box:
        box.load("c")
        result = box.execute("llm_query_batched(['ab'] * 1_300_000)", measure)  # a 7.8 MB frame
        after = box.execute("print(len(context) + 41)", no_calls)
    return result, held, after


def test_a_frame_counts_at_what_parsing_it_builds():
    # Hole 3 (closed): the frame was counted at its 7.8 MB while parsing built 77 MB of str objects.
    result, held, _ = _parse_a_frame_of_short_strings(HostFrameBudget(256 << 20))
    assert result.error is None, result.error
    assert held["counted"] >= held["parsed"], held


def test_a_frame_that_parses_past_the_account_is_refused_and_the_run_goes_on():
    result, held, after = _parse_a_frame_of_short_strings(HostFrameBudget(16 << 20))  # twice its bytes
    assert result.error is not None and "bytes the host keeps" in result.error, result.error
    assert held == {}  # the call never ran
    assert after.error is None and after.output.strip() == "42", after


# --- stdlib callers handed the guarded builtins, and the classes `type()` gives (policy on) -------------
@pytest.mark.parametrize(
    "code",
    [
        "import functools\nfunctools.reduce(getattr, ['__class__'], 1)",
        "list(itertools.starmap(getattr, [(1, '__class__')]))",
        "list(itertools.accumulate(['__class__'], getattr, initial=1))",
        "import functools\nd = collections.defaultdict(functools.partial(getattr, 1, '__class__'))\nd['k']",
        "import heapq, functools\nheapq.nsmallest(1, [1], key=functools.partial(getattr, name='__class__'))",
        "class C:\n    f = classmethod(getattr)\nC.f('__dict__')",
        "class C:\n    x = property(functools.partial(getattr, name='__class__'))\nC().x",
        "F = type(type(int))\nF(len, {})",  # the function class, without a code object to give it
        "json.loads('1', cls=type(llm_query))",  # the REPL function class as a decoder
        "json.dumps(1, cls=type(re))",  # the ready module class as an encoder
        "import base64\nbase64.b64decode(b'AA==', altchars=getattr)",
        "import random\nrandom.choices([1], cum_weights=getattr(1, '__class__'))",
        "import hashlib\nhashlib.new('sha256')",
        "import unicodedata\nunicodedata.ucd_3_2_0",
        "import html\nhtml.parser",
        "re.template('a')",
        "difflib.HtmlDiff",
        "del getattr\ngetattr(1, '__class__')",
    ],
    ids=[
        "reduce-getattr",
        "starmap-getattr",
        "accumulate-getattr",
        "defaultdict-factory-getattr",
        "nsmallest-key-getattr",
        "classmethod-getattr",
        "property-getattr",
        "function-class",
        "json-loads-cls",
        "json-dumps-cls",
        "b64decode-altchars",
        "choices-weights",
        "hashlib-new",
        "unicodedata-ucd",
        "html-parser",
        "re-template",
        "difflib-html",
        "del-builtin",
    ],
)
def test_stdlib_callers_and_handed_out_classes_reach_nothing_new(restricted, code):
    assert_refused_and_box_intact(restricted, code)
