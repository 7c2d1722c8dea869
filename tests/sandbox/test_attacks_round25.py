"""Twenty-fifth attack round: with fresh eyes, the surfaces the earlier rounds touched least, with the
Python policy on and off: RestrictedPython against newer syntax and the ready modules' objects, the
OS jail alone against kernel objects the allowed calls still make, children handed odd contexts, and
the E2B adapter's host side against what a hostile remote hands back besides printed text.

Probed (policy on, /tmp/s12/attack25/probe_policy.py): `match` class patterns and `except*` (refused
at compile time: RestrictedPython knows neither node), walrus in comprehensions and class bodies,
f-string `=`/`!r` and nested format specs, `str.format`/`format_map` through `map(str.format, ...)`,
`format()` of a facade, decorators, class bodies, generators' `throw`, a generator's endless
`finally` dropped, `del`/augmented assignment on facades, tuples and REPL names, star-unpacking into
subscripts, `setattr`/`delattr` builtins on classes and facades, `list[int]` and its class, property
and classmethod objects, exceptions' `add_note`/`with_traceback`, `datetime` strftime/strptime
(`_strptime` through the guarded import), re's scanner and Match objects, difflib's SequenceMatcher,
namedtuple and Counter members, and a subclass of the ready modules' class (`class M(type(re))`).
(Policy off, /tmp/s12/attack25/probe_off.py): O_TMPFILE in readable folders, MAP_HUGETLB (no pool
here), personality, /proc/<host pid>, kill(-1), arch_prctl, mseal, mremap of a shared mapping.
Children handed contexts of nan, inf, a bool, a 4,001-digit int, `{'\\ud800': 1}`, whitespace.

Held (kept below): the format routes, the ready modules' subclass, odd child contexts, O_TMPFILE,
and (E2B) printing past 8 MB stops the step: the control for holes 2 and 3.
Probed and not kept: everything else above held too and is close to earlier rounds' tests
(setattr/delattr, `del` and `+=` on facades, dunder walks); MADV_HUGEPAGE on an executable mapping
of a readable file cannot collapse it here (the kernel has no CONFIG_READ_ONLY_THP_FOR_FS); a
session's variable listing (`describe_variables`) calls `repr`/`len`/`type` as the model may have
rebound them, which only lets the model's code describe its own variables or time out its own REPL.

Three holes, found as strict xfails and closed the same session (reproductions in
/tmp/s12/attack25/HOLES.md); what they were:
1. with the policy off, a worker made ~15,000 one-page MAP_SHARED|MAP_ANONYMOUS mappings: each is a
   shmem file of its own ("/dev/zero (deleted)": an inode, a dentry and a struct file), ~23 MB of
   kernel slab (18 MB unreclaimable) outside its memory cap for the worker's life, under the host's
   bound of 16,384 mappings; what round 17 closed for memfd_create, reached without it;
2. in an E2B sandbox, rich display results (IPython's `display()`) were kept by the SDK for the whole
   step like printed output, but counted against neither the 8 MB per-step cap nor the run's
   account: the step went on and the host held them all;
3. an E2B step's trailing expression's value and its error's value and traceback reached the host
   whole and uncounted (a 100 MB value: ~380 MB of host allocations, a 100 MB error ~760 MB), where
   the same text printed stops the step at 8 MB.
The fixes: the jail's seccomp filter refuses mmap with MAP_SHARED and MAP_ANONYMOUS together (which
MAP_SHARED_VALIDATE holds too) and MAP_HUGETLB (syscall_arguments.py), closing the kind of mapping,
not one call that makes it; the E2B adapter passes on_result and on_error to run_code, and the
output reader counts each result and error the SDK holds as it counts printed text (bridge.py).
"""

from __future__ import annotations

import errno
import textwrap

import pytest

from rlm.sandbox.base import SandboxLimits
from rlm.sandbox.e2b import E2BSandbox, service
from rlm.sandbox.host_memory import HostFrameBudget
from rlm.sandbox.local import LocalSandbox
from rlm.sandbox.local.kernel_memory import MAX_MAPPINGS
from tests.sandbox import fake_e2b
from tests.sandbox.conftest import (
    LIBC_MMAP,
    PROBE_REPORT,
    RAW,
    assert_refused_and_box_intact,
    attempt,
    needs_jail,
    no_calls,
    run_with_first_step,
)
from tests.sandbox.fake_e2b import FakeSandbox, fresh_service


# --- OS jail alone: kernel objects made by the calls it allows ------------------------------------------------
def _shared_anonymous_mappings(count: int, flags: int) -> str:
    """Map `count` one-page anonymous mappings with `flags` (never touched) and keep them."""
    return f"""{LIBC_MMAP}pinned = 0
for i in range({count}):
    address = libc.mmap(None, 4096, 0, {flags}, -1, 0)  # PROT_NONE
    if address in (None, ctypes.c_void_p(-1).value):
        break
    pinned += 1
result = pinned
"""


@needs_jail
def test_a_worker_cannot_pin_shmem_files_through_shared_anonymous_mappings():
    count, flags = MAX_MAPPINGS - 500, 0x21  # MAP_SHARED | MAP_ANONYMOUS
    with LocalSandbox(SandboxLimits(exec_timeout=30.0, memory_limit_mb=256), python_policy=False) as box:
        box.load("ctx")
        body = _shared_anonymous_mappings(count, flags)
        built = box.execute("try:\n" + textwrap.indent(RAW + body, "    ") + PROBE_REPORT, no_calls)
        later = box.execute("print('pinned' in dir(), len(context))", no_calls)
    assert built.output == "OK: 0\n", built  # the jail refuses the first, as it refuses memfd_create
    assert later.output == "True 3\n", later


@needs_jail
@pytest.mark.parametrize(
    ("flags", "refused"),
    [(0x21, True), (0x23, True), (0x40022, True), (0x22, False)],
    ids=["shared", "shared-validate", "hugetlb", "private"],
)
def test_mmap_flags_the_jail_refuses_and_the_one_the_runtime_uses(unrestricted, flags, refused):
    # MAP_SHARED_VALIDATE (0x03) holds MAP_SHARED's bit; MAP_HUGETLB draws on the machine's shared pool;
    # MAP_PRIVATE | MAP_ANONYMOUS is every allocator's, and must still work.
    mapped = f"""{LIBC_MMAP}ctypes.set_errno(0)
address = libc.mmap(None, 4096, 0, {flags}, -1, 0)
result = (address == ctypes.c_void_p(-1).value, ctypes.get_errno())
"""
    outcome = attempt(unrestricted, mapped)
    assert outcome == (f"OK: (True, {errno.EPERM})\n" if refused else "OK: (False, 0)\n"), outcome


@needs_jail
@pytest.mark.parametrize("where", ["os.path.dirname(os.__file__)", "os.path.dirname(policy.__file__)"])
def test_an_unnamed_temporary_file_cannot_be_made_in_a_readable_folder(unrestricted, where):
    # O_TMPFILE makes an inode with no name in the folder: writing a file Landlock's rules never name
    outcome = attempt(unrestricted, f"import policy\nresult = os.open({where}, os.O_TMPFILE | os.O_RDWR, 0o600)")
    assert outcome.startswith("DENIED: PermissionError"), outcome


# --- policy on: format strings and the ready modules' class ---------------------------------------------------
@pytest.mark.parametrize(
    "src",
    [
        "list(map(str.format, ['{0.__class__}'], [1]))",
        "f = str.format_map",
        "x = 3\ny = f'{x:{\"{0.__class__}\"}}'",
        "format(re, '{0.__class__}')",
        "class F(str):\n    pass\ng = F('{0.__class__}').format",
    ],
)
def test_format_string_routes_are_refused(restricted, src):
    assert_refused_and_box_intact(restricted, src)


@pytest.mark.parametrize(
    "src",
    [
        "class M(type(re)):\n    pass\nm = M('os')",
        "class M(type(re)):\n    pass\nm = getattr(M('json'), '__class__')",
        "class M(type(re)):\n    pass\nm = M('json')\nm.loads = 1",
    ],
)
def test_a_subclass_of_the_ready_modules_class_reaches_no_other_module(restricted, src):
    assert_refused_and_box_intact(restricted, src)


# --- children handed odd contexts -----------------------------------------------------------------------------
@pytest.mark.parametrize("context", ["float('nan')", "True", "10 ** 4000"])
def test_a_child_handed_an_odd_json_value_as_context_runs(context):
    answer, prompts = run_with_first_step(f"print(recursive_llm('q', {context}))", max_depth=3)
    assert answer == "done"
    assert len(prompts) >= 3  # the child was asked, and the root went on


# --- E2B adapter's host side: what the remote hands back besides printed text --------------------------------
_DISPLAY = """

def display(value):
    _out.flush()
    _send({"type": "result", "text": _plain(value), "is_main_result": False})

_namespace["display"] = display"""


@pytest.fixture
def e2b_box(tmp_path, monkeypatch):
    """An E2B sandbox on the fake whose kernel also has IPython's `display()` (a display_data message,
    which the SDK keeps in `execution.results` as it keeps stream messages), on a 64 MiB account."""
    monkeypatch.setattr(service, "BACKOFF_BASE_S", 0.02)
    fresh_service(monkeypatch)
    namespace = '_namespace = {"__name__": "__main__", "__builtins__": __builtins__}'
    assert namespace in fake_e2b._KERNEL
    monkeypatch.setattr(fake_e2b, "_KERNEL", fake_e2b._KERNEL.replace(namespace, namespace + _DISPLAY))
    limits = SandboxLimits(exec_timeout=20.0, frame_budget=HostFrameBudget(64 << 20))
    box = E2BSandbox(limits, workdir=str(tmp_path / "rlm"), sdk=FakeSandbox, api_key="e2b-test")
    box.start()
    box.load("ctx")
    yield box
    box.close()
    FakeSandbox.shutdown()


# the fake's reader thread meets the killed kernel's half-written line: the fake's, not the adapter's
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_printing_past_the_step_cap_stops_the_step(e2b_box):
    # the control: printed text is counted as it streams, and 48 MB of it stops the step
    result = e2b_box.execute("for i in range(12):\n    print('x' * 4_000_000)", no_calls)
    assert result.restarted and "OutputLimit" in (result.error or ""), result.error


def test_display_results_past_the_step_cap_stop_the_step(e2b_box):
    result = e2b_box.execute("for i in range(12):\n    display('x' * 4_000_000)", no_calls)
    assert result.restarted and "OutputLimit" in (result.error or ""), result.error


@pytest.mark.parametrize("code", ["'x' * 20_000_000", "raise ValueError('x' * 20_000_000)"], ids=["value", "error"])
def test_a_result_or_error_past_the_step_cap_stops_the_step(e2b_box, code):
    result = e2b_box.execute(code, no_calls)
    assert result.restarted and "OutputLimit" in (result.error or ""), (result.output[:200], (result.error or "")[:200])
