"""Seventeenth attack round: kernel memory a jailed worker (policy off) pins through file mappings,
the descriptors and pipes it still has, what the host does with forged call and result frames,
typed answers read from a reply's prose, and the bundled local model server as something another
local user's process can stand in for.

Four holes, found as strict xfails (reproductions, causes and suggested fixes in
/tmp/s10/attack17/HOLES.md) and closed the same session; what they were:
1. with the policy off, a worker maps ~16,000 empty memfds, one page each, and closes every
   descriptor: each mapping pins a shmem inode, a dentry and a struct file, ~30 MB of kernel slab
   (19 MB unreclaimable) outside its memory cap, for the worker's life, under the host's bound of
   16,384 mappings (which it sizes at ~240 bytes a mapping, ~4 MB);
2. another local user's process that listens first on the bundled model's port and answers
   /v1/models with the bundled model's id is adopted as the local model server: the user's prompts
   (their documents) go to it and its replies drive the run;
3. with a typed answer (`output=...`), a reply's prose FINAL({...}) reaches ast.literal_eval on the
   host unclipped and with no timer: a set of complex numbers whose hashes collide is built in
   quadratic time (round 16 closed this for untyped runs only);
4. the run's frame account counts an ASCII frame once while the host holds it twice (its bytes and
   its text while decoding, its text and the parsed strings while json.loads runs): a 60 MB frame
   inside a 64 MiB account made the host allocate 120 MB.
The fixes: the jail refuses memfd_create (and mbind, set_mempolicy, naming anonymous mappings);
the bundled server is used only when its listener is this user's own (`models/port_owner.py`); a
prose FINAL is clipped to max_answer_chars before anything reads it; a frame counts every copy
that exists at each stage of reading it, and the default account is twice what it was to match.
"""

from __future__ import annotations

import textwrap

import pytest

from rlm.errors import ConfigurationError
from rlm.sandbox.base import SandboxLimits
from rlm.sandbox.host_memory import HostFrameBudget
from rlm.sandbox.local import LocalSandbox
from rlm.sandbox.local.kernel_memory import MAX_MAPPINGS
from tests.sandbox.conftest import (
    LIBC_MMAP,
    PROBE_REPORT,
    RAW,
    SEND_BODY_READ_REPLY,
    attempt,
    finishes_within,
    needs_jail,
    no_calls,
    run_with_first_step,
    traced_peak,
    x86_64_only,
)
from tests.sandbox.port_listeners import as_another_user, free_port, local_server_at, never_launch, serve_listener, stop


# --- OS jail alone: kernel objects pinned by file mappings ---------------------------------------------------
def _memfd_mappings(count: int) -> str:
    """Map `count` empty memfds of one page each (no page is ever touched) and close their descriptors."""
    return f"""{LIBC_MMAP}pinned = 0
for i in range({count}):
    fd = os.memfd_create('m' * 249)  # a new inode, and a dentry whose long name is its own allocation
    address = libc.mmap(None, 4096, 0, 1, fd, 0)  # PROT_NONE, MAP_SHARED
    os.close(fd)  # the mapping keeps the file, its dentry and inode alive
    if address in (None, ctypes.c_void_p(-1).value):
        break
    pinned += 1
result = pinned
"""


def _pin_and_look_again(count: int) -> tuple[object, object]:
    with LocalSandbox(SandboxLimits(exec_timeout=30.0, memory_limit_mb=256), python_policy=False) as box:
        box.load("ctx")
        built = box.execute("try:\n" + textwrap.indent(RAW + _memfd_mappings(count), "    ") + PROBE_REPORT, no_calls)
        later = box.execute("print('pinned' in dir(), len(context))", no_calls)
    return built, later


@needs_jail
@pytest.mark.parametrize("count", [MAX_MAPPINGS - 500, MAX_MAPPINGS + 2000])
def test_a_worker_cannot_pin_files_inodes_and_dentries_through_mappings(count):
    # Each mapping of its own memfd cost the kernel ~1.9 KB (measured: Slab +29.7 MB, SUnreclaim
    # +19.1 MB for 15,884), not the ~240 bytes of an anonymous one the mapping bound was sized for.
    # The jail refuses memfd_create now; past the bound the worker would be replaced anyway.
    built, later = _pin_and_look_again(count)
    assert built.output.startswith("DENIED: PermissionError"), built
    assert later.output == "True 3\n", later  # the refusal cost the worker nothing


# --- OS jail alone: what the worker's own descriptors and the allowed calls still reach ----------------------
@needs_jail
@x86_64_only
@pytest.mark.parametrize("command", ["1026", "(1 << 32) | 1026", "(0xFFFF << 48) | 1026"])
def test_the_worker_cannot_watch_a_readable_folder_with_dnotify(unrestricted, command):
    # fcntl(F_NOTIFY, DN_MODIFY | DN_CREATE | DN_MULTISHOT) on the standard library's folder: it would
    # signal the worker whenever the host's user changes a file there (as inotify would)
    outcome = attempt(
        unrestricted,
        f"fd = os.open(os.path.dirname(os.__file__), os.O_RDONLY)\n"
        f"try:\n    result = sc(72, fd, {command}, 0x80000006)\nfinally:\n    os.close(fd)",
    )
    assert outcome.startswith("DENIED: PermissionError"), outcome


@needs_jail
@x86_64_only
@pytest.mark.parametrize("fd", [3, 4])
@pytest.mark.parametrize("command", ["0x5412", "(1 << 32) | 0x5412", "0x540E"])
def test_terminal_ioctls_on_the_workers_channel_reach_no_terminal(unrestricted, fd, command):
    # TIOCSTI (type into a terminal) and TIOCSCTTY, the family the filter allows, on the host's pipes
    outcome = attempt(unrestricted, f"buf[0] = b'x'\nresult = sc(16, {fd}, {command}, buf)")
    assert outcome.startswith("DENIED: OSError [Errno 25]"), outcome  # ENOTTY: the pipes are no terminal
    assert unrestricted.execute("print(len(context))", no_calls).output == "7\n"


@needs_jail
def test_a_worker_that_closes_its_own_channel_and_spins_is_replaced():
    with LocalSandbox(SandboxLimits(exec_timeout=3.0, memory_limit_mb=256), python_policy=False) as box:
        box.load("ctx")
        gone = box.execute("import os\nos.closerange(3, 5)\nwhile True:\n    pass", no_calls)
        after = box.execute("print(len(context))", no_calls)
    assert gone.restarted and gone.final_answer is None, gone
    assert after.output == "3\n", after


# --- what the host does with forged call and result frames (`policy_off`: conftest's) ------------------------
def _forged_then_read(body: bytes) -> str:
    return textwrap.dedent(
        f"""
        import os, struct
        os.write(4, struct.pack('>I', {len(body)}) + {body!r})
        (size,) = struct.unpack('>I', os.read(3, 4))
        reply = b''
        while len(reply) < size:
            reply += os.read(3, size - len(reply))
        print(reply[:200])
        """
    )


@needs_jail
@pytest.mark.parametrize(
    "fn",
    [
        b"[" * 900 + b"]" * 900,  # str() of it recurses past the stack
        b'{"a": ' * 400 + b"1" + b"}" * 400,
        b'"llm_query\\u0000\\ud800"',
    ],
)
def test_a_forged_call_naming_no_function_is_an_error_the_code_reads(policy_off, fn):
    body = b'{"type": "call", "fn": ' + fn + b', "args": ["p"], "kwargs": {}}'
    answer, prompts = run_with_first_step(_forged_then_read(body), sandbox="restricted")
    assert answer == "done"
    assert '{"error": ' in prompts[1], prompts[1][-500:]  # answered with an error the code printed; the run went on


FRAME_OF_ONE_STRING = f"""
import os, struct
body = b'{{"type": "call", "fn": "llm_query", "args": ["' + b'a' * (60 << 20) + b'"], "kwargs": {{}}}}'
{SEND_BODY_READ_REPLY}print(reply[:60])
"""


@needs_jail
def test_a_frame_never_makes_the_host_allocate_past_the_runs_account():
    budget = HostFrameBudget(64 << 20)
    counted: list[int] = []

    def handler(fn, args, kwargs):
        counted.append(budget.held_bytes)
        return "ok"

    limits = SandboxLimits(exec_timeout=30.0, memory_limit_mb=512, frame_budget=budget)
    with LocalSandbox(limits, python_policy=False) as box:
        box.load("ctx")
        peak, result = traced_peak(lambda: box.execute(FRAME_OF_ONE_STRING, handler))
    assert result.error is None or not counted, result  # the frame is refused, or ...
    assert peak <= budget.limit_bytes + (8 << 20), f"counted {counted}, allocated {peak:,}"  # ... fits as counted


@needs_jail
def test_a_forged_result_whose_submitted_fields_nest_deep_never_ends_the_step(policy_off):
    deep = b"[" * 900 + b"]" * 900
    body = b'{"type": "result", "output": "o", "error": null, "final": null, "submitted": {"x": ' + deep + b"}}"
    step = f"import os, struct\nos.write(4, struct.pack('>I', {len(body)}) + {body!r})\nimport time\ntime.sleep(5)"
    answer, _ = run_with_first_step(step, sandbox="restricted")
    assert answer == "done"


def _dspy_chat_reply(src: str) -> str:
    return f"[[ ## reasoning ## ]]\nLet me check.\n\n[[ ## code ## ]]\n```python\n{src}\n```\n\n[[ ## completed ## ]]"


@needs_jail
@pytest.mark.parametrize(
    "answer",
    [b"[" * 900 + b"]" * 900, b'{"a": ' * 500 + b"1" + b"}" * 500, b'"\\ud800x"', b"1e400"],
)
def test_a_forged_submit_never_ends_a_dspy_rlm_on_the_restricted_interpreter(answer):
    import dspy

    from rlm.sandbox.dspy_interop import RestrictedInterpreter
    from rlm.testing import scripted_lm

    body = b'{"type": "result", "output": "", "error": null, "final": null, "submitted": {"answer": ' + answer + b"}}"
    step = f"import os, struct\nos.write(4, struct.pack('>I', {len(body)}) + {body!r})\nos._exit(0)"

    def policy_off_interpreter(*args, **kwargs):
        interpreter = RestrictedInterpreter(*args, **kwargs)
        interpreter._sandbox = LocalSandbox(interpreter._sandbox.limits, python_policy=False)
        return interpreter

    lm, _ = scripted_lm([_dspy_chat_reply(step)] + [_dspy_chat_reply("SUBMIT(answer='ok')")] * 4)
    rlm = dspy.RLM("context, query -> answer", max_iters=3, interpreter_factory=policy_off_interpreter)
    with dspy.context(lm=lm):
        prediction = rlm(context="ctx", query="q")
    prediction.answer.encode("utf-8")  # an answer the user's program can print and save


# --- typed answers read on the host: linear in what the model sent ------------------------------------------
COLLIDING = '"{" + ",".join(f"{-1000003 * k}+{k}j" for k in range(40000)) + "}"'

TYPED_PROSE_FINAL = f"""
from rlm import RLM
from rlm.testing import scripted_lm

colliding = {COLLIDING}  # every complex hashes alike
lm, _ = scripted_lm([f"I am done.\\nFINAL({{colliding}})"] * 3)
RLM(model=lm, max_iterations=1).run("q", "ctx", output=int)
"""

TYPED_STEP_FINAL = """
from rlm import RLM
from rlm.testing import scripted_lm

step = "s = '{' + ','.join(str(-1000003 * k) + '+' + str(k) + 'j' for k in range(40000)) + '}'\\nFINAL(s)"
lm, _ = scripted_lm(["```python\\n" + step + "\\n```"] * 3)
RLM(model=lm, max_iterations=1, sandbox="restricted").run("q", "ctx", output=int)
"""


@needs_jail
def test_a_typed_step_final_of_colliding_set_members_is_clipped_before_it_is_read():
    # 0.8 MB of answer cut to max_answer_chars (100,000) before the type check: seconds
    assert finishes_within(TYPED_STEP_FINAL, 25), "reading the step's typed FINAL took past 25 s"


def test_a_typed_prose_final_of_colliding_set_members_is_read_in_linear_time():
    # 0.8 MB of reply: a few seconds when linear (import included), ~45 s when quadratic
    assert finishes_within(TYPED_PROSE_FINAL, 25), "reading the reply's typed FINAL took past 25 s"


# --- the bundled local model server: another local user's process on its port -------------------------------
@as_another_user
def test_another_users_server_on_the_local_models_port_is_never_adopted(tmp_path, monkeypatch):
    from rlm.models import local_server

    port = free_port()
    # Another user of the machine, answering /v1/models with the bundled model's id.
    squatter = serve_listener(port, local_server.SERVED_MODEL_ID, tmp_path / "seen.jsonl", "other-user")
    try:
        local_server_at(monkeypatch, port, tmp_path)
        monkeypatch.setattr(local_server.LocalServer, "_launch", never_launch)
        with pytest.raises(ConfigurationError):
            local_server.ensure_local_server()
    finally:
        stop(squatter)
