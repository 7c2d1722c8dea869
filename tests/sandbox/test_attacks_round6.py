"""Sixth attack round on the local sandbox, after augmented assignment to items and attributes, the
ready module facades, the live/expired step timer and the worker's UTS namespace arrived.

The policy half (policy on) tries `a[k] += v` and `o.x += v` against what the write guard protects
(classes, facades, REPL functions, tuples), with underscore names, through the class of the ready
modules that `type()` hands out, and inside a step that ran past its limit. The jail half
(`python_policy=False`, plain Python as after a hole in the policy) tries to leave or undo the UTS
and user namespaces, regain capabilities, read the host process's links under /proc, start a
thread, aim a timer's signal at the host, and raise the limits. Every probe held when written.
"""

from __future__ import annotations

import pytest

from rlm.sandbox.base import SandboxLimits
from rlm.sandbox.local import LocalSandbox, jail
from rlm.sandbox.local.processes import network_isolation_available
from tests.sandbox.conftest import assert_refused_and_box_intact, attempt, no_calls, x86_64_only

pytestmark = pytest.mark.skipif(not jail.probe().available, reason=f"no OS jail here: {jail.probe().problem}")


# --- augmented assignment (policy on) ---------------------------------------------------------------
@pytest.mark.parametrize(
    "target",
    ["o._hidden", "o.__class__", "o.__dict__", "o.x.__dict__", "d['k']._x"],
    ids=["underscore", "class", "dict", "nested-dunder", "item-then-underscore"],
)
def test_augmented_assignment_cannot_name_underscore_attributes(restricted, target):
    code = f"class C:\n    pass\no = C()\nd = {{'k': o}}\n{target} += 1"
    result = restricted.execute(code, no_calls)
    assert result.error is not None and result.error.startswith("SecurityError"), result.error
    assert restricted.execute("len(context)", no_calls).output == "11\n"


@pytest.mark.parametrize(
    "code",
    [
        "class C:\n    x = 1\nC.x += 1",  # a class object, not an instance of the model's
        "re.compile += 1",  # a ready module's facade
        "re['compile'] += 1",
        "llm_query.name += 'x'",  # a REPL function
        "t = ([1], 2)\nt[1] += 1",  # an immutable container
        "import datetime\nd = datetime.date(2020, 1, 1)\nd.year += 1",  # a library object
        "q = collections.deque([1])\nq[0] += 1",  # a container outside the write guard's list
        "class C:\n    pass\no = C()\no.mro = 1\no.mro += 1",  # a blocked attribute, read first
    ],
    ids=["class", "facade-attr", "facade-item", "repl-function", "tuple", "date", "deque", "blocked-name"],
)
def test_augmented_assignment_writes_only_what_plain_assignment_may(restricted, code):
    assert_refused_and_box_intact(restricted, code)


def test_augmented_assignment_on_counter_subclasses_runs_once_inside_the_step(restricted):
    # The model's own subclasses and factories run, as in Python, inside the step; key and value
    # are evaluated once each.
    code = (
        "calls = []\n"
        "def key():\n    calls.append('k')\n    return 'a'\n"
        "class K(collections.Counter):\n    pass\n"
        "k = K()\nk[key()] += 2\n"
        "d = collections.defaultdict(list)\nd[key()] += [1]\n"
        "(calls, dict(k), dict(d))"
    )
    result = restricted.execute(code, no_calls)
    assert result.error is None, result.error
    assert result.output == "(['k', 'k'], {'a': 2}, {'a': [1]})\n"


def test_runaway_inside_augmented_assignment_is_cut_and_keeps_the_variables(restricted):
    result = restricted.execute("counts = {'a': 0}\nwhile True:\n    counts['a'] += 1", no_calls)
    assert result.error is not None and result.error.startswith("TimeoutError"), result.error
    assert not result.restarted
    assert restricted.execute("counts['a'] > 0", no_calls).output == "True\n"


def test_a_step_past_its_limit_makes_no_host_call_from_an_augmented_assignment():
    calls = []

    def record(fn, args, kwargs):
        calls.append(fn)
        return "answer"

    box = LocalSandbox(SandboxLimits(exec_timeout=1.0, memory_limit_mb=256))
    box.start()
    try:
        box.load("ctx")
        swallowed = "try:\n    while True:\n        pass\nexcept TimeoutError:\n    pass\n"
        code = "d = {'a': ''}\n" + swallowed + "d['a'] += llm_query('x')"
        result = box.execute(code, record)
        assert result.error is not None and result.error.startswith("TimeoutError"), result.error
        assert calls == []
        assert box.execute("len(context)", no_calls).output == "3\n"
    finally:
        box.close()


# --- the ready modules' class (policy on) -------------------------------------------------------------
@pytest.mark.parametrize(
    "code",
    [
        "M = type(re)\nM('os').system",  # a facade for a module outside the list
        "M = type(re)\nM('_' + 'strptime').strptime",  # the one internal import, by a built name
        "M = type(re)\nclass X(M):\n    pass\nX('sys').path",  # a subclass of the model's
        "M = type(re)\nclass X(M):\n    pass\nx = X('json')\nx.loads += 1",  # written through the guard
        "getattr(re, '_names')",
        "getattr(collections, '__dict__')",
        "getattr(json, '_loaded')",
        "collections.abc",  # a submodule the real module holds
    ],
    ids=["os", "internal-import", "subclass-sys", "subclass-write", "names", "dict", "loader", "submodule"],
)
def test_ready_modules_and_their_class_reach_nothing_beyond_the_facade(restricted, code):
    assert_refused_and_box_intact(restricted, code)


# --- the OS jail alone (policy off) --------------------------------------------------------------------
@x86_64_only
@pytest.mark.parametrize(
    "action",
    [
        "result = sc(272, 0x04000000)",  # unshare(CLONE_NEWUTS): a fresh name of its own choosing
        "result = sc(272, 0x10000000)",  # unshare(CLONE_NEWUSER)
        "result = sc(308, 0, 0)",  # setns
        "result = sc(171, ctypes.c_char_p(b'host'), 4)",  # setdomainname
        "result = sc(157, 47, 2, 21, 0, 0)",  # PR_CAP_AMBIENT_RAISE CAP_SYS_ADMIN
        "result = sc(105, 0)",  # setuid(0) inside its user namespace
    ],
    ids=["unshare-uts", "unshare-user", "setns", "setdomainname", "ambient-raise", "setuid"],
)
def test_namespaces_cannot_be_left_or_changed(unrestricted, action):
    assert attempt(unrestricted, action).startswith("DENIED"), action


def test_host_name_stays_sandbox_and_every_capability_is_gone(unrestricted):
    bounding = attempt(unrestricted, "result = [libc.prctl(23, c, 0, 0, 0) for c in range(41)]")
    assert bounding.startswith("OK:") and "1" not in bounding.split(":", 1)[1], bounding
    if network_isolation_available():
        assert attempt(unrestricted, "import socket\nresult = socket.gethostname()") == "OK: 'sandbox'\n"


@pytest.mark.parametrize("link", ["fd/0", "fd/3", "root", "ns/uts", "ns/user", "cwd"])
def test_the_host_process_links_under_proc_stay_closed(unrestricted, link):
    assert attempt(unrestricted, f"result = os.readlink(f'/proc/{{host}}/{link}')").startswith("DENIED")


@x86_64_only
@pytest.mark.parametrize(
    "action",
    [
        "import threading\nthreading.Thread(target=lambda: None).start()\nresult = 'thread'",
        # timer_create with SIGEV_THREAD_ID aimed at the host's pid
        "sev = struct.pack('iii', 0, 14, 4) + struct.pack('i', host) + bytes(48)\n"
        "tid = ctypes.c_int(0)\nresult = sc(222, 0, ctypes.c_char_p(sev), ctypes.byref(tid))",
        "result = sc(62, 0, 0)",  # kill(0, 0): the process group
        "import resource\ns, h = resource.getrlimit(resource.RLIMIT_AS)\n"
        "resource.setrlimit(resource.RLIMIT_AS, (h, h + 4096))\nresult = 'raised'",
        "import mmap\nresult = len(mmap.mmap(-1, 1 << 34, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | 0x4000))",
    ],
    ids=["thread", "timer-at-host", "kill-group", "raise-memory-cap", "noreserve-16g"],
)
def test_no_second_thread_no_signal_outward_no_limit_raised(unrestricted, action):
    assert attempt(unrestricted, action).startswith("DENIED"), action


@pytest.mark.parametrize(
    "action",
    [
        "result = os.listdir('/')",
        "result = os.listdir('/sys/class/net')",
        "result = os.open('/dev/tty', os.O_RDWR)",
        "result = open('/proc/self/mountinfo').read()",
        "result = os.symlink('/etc/passwd', os.path.dirname(os.__file__) + '/round6-link')",
    ],
    ids=["list-root", "sys-net", "dev-tty", "mountinfo", "symlink-in-stdlib"],
)
def test_files_outside_the_allowed_folders_stay_closed(unrestricted, action):
    assert attempt(unrestricted, action).startswith("DENIED"), action
