"""Sixteenth attack round: the OS jail alone against kernel memory the worker holds in its own
mappings and files (VMAs split one page at a time, memfd growth, descriptors), the newest seccomp
rules fed arguments with high bits; what the host does with a forged result frame; and a hostile
program file (`RLM(program=PATH)`) a user was handed.

Five holes, found as strict xfails (reproductions, causes and suggested fixes in
/tmp/s10/attack16/HOLES.md) and closed the same session; what they were:
1. with the policy off, a worker splits an anonymous mapping into ~64,000 one-page VMAs with
   mprotect: ~15 MB of unreclaimable kernel slab (vm_area_struct, maple nodes) outside its memory
   cap, held for the worker's whole life; the host's page-table check does not see it (no page is
   touched, VmPTE stays 0);
2. a program file holding an integer longer than 4,300 digits, or nesting deeper than the JSON
   parser's stack, raises ValueError / RecursionError out of RLM(...) instead of ProgramFileError;
3. a program file's strings are not made UTF-8-safe: a lone surrogate (a JSON escape) in its
   instructions raises UnicodeEncodeError out of RLM(...), one in a demo makes every run() raise;
4. a results file line holding an integer past 4,300 digits raises ValueError out of
   ResultStore.open (`rlm batch --out FILE` resuming) instead of being left out as a bad line;
5. a reply's prose FINAL({...}) goes through ast.literal_eval on the host, with no timer: a set of
   complex numbers whose hashes all collide builds in quadratic time (0.4 MB: 9 s, 0.8 MB: 25 s).
The fixes: the host counts a stopped worker's mappings beside its page tables and replaces one past
16,384 (`sandbox/local/kernel_memory.py`); a program file is read as any stranger's text (every
JSON failure is a ProgramFileError, strings pass through rlm/utf8.py); a results line JSON cannot
read is a bad line; a prose FINAL's argument is parsed, never evaluated (only a string is kept).
"""

from __future__ import annotations

import json
import textwrap

import pytest

from rlm import RLM
from rlm.errors import RLMError
from rlm.optimize.program_file import ProgramFileError
from rlm.sandbox.base import SandboxLimits
from rlm.sandbox.local import LocalSandbox
from rlm.testing import FakeOpenAIServer, scripted_lm
from tests.sandbox.conftest import (
    LIBC_MMAP,
    PROBE_REPORT,
    RAW,
    attempt,
    code,
    finishes_within,
    forged_frames,
    needs_jail,
    no_calls,
    x86_64_only,
)

# --- OS jail alone: kernel memory in the worker's own mappings and files ------------------------------------
SPLIT_INTO_VMAS = f"""{LIBC_MMAP}libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
pages = 64000
base = libc.mmap(None, pages * 4096, 0, 0x22, -1, 0)  # PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS: no page touched
split = 0
for page in range(0, pages, 2):  # every other page readable: one VMA a page
    if libc.mprotect(base + page * 4096, 4096, 1) != 0:
        break
    split += 1
held_vmas = split
result = split
"""


@needs_jail
def test_a_worker_that_splits_its_memory_into_vmas_is_replaced():
    with LocalSandbox(SandboxLimits(exec_timeout=30.0, memory_limit_mb=512), python_policy=False) as box:
        box.load("ctx")
        # The split itself cannot be refused (mprotect is the interpreter's own tool); the worker that
        # holds it is replaced when it stops, so its kernel records go with it.
        built = box.execute("try:\n" + textwrap.indent(RAW + SPLIT_INTO_VMAS, "    ") + PROBE_REPORT, no_calls)
        assert built.restarted and "separate mappings" in (built.error or ""), built
        after = box.execute("print('held_vmas' in dir(), len(context))", no_calls)
    assert after.output == "False 3\n", after


@needs_jail
@pytest.mark.parametrize(
    "grow",
    [
        "os.write(fd, b'a' * (1 << 20))",
        "os.ftruncate(fd, 1 << 30)",
        "os.posix_fallocate(fd, 0, 1 << 26)",
    ],
)
def test_a_memfd_cannot_grow_as_memory_outside_the_cap(unrestricted, grow):
    # shmem pages written through a descriptor are never mapped, so the address-space cap would not see them.
    outcome = attempt(
        unrestricted, f"fd = os.memfd_create('reserve')\ntry:\n    result = {grow}\nfinally:\n    os.close(fd)"
    )
    # Round 16 found write, ftruncate and fallocate refused with EFBIG (the file-size limit is 0);
    # since round 17 the jail refuses memfd_create itself.
    assert outcome.startswith("DENIED: PermissionError"), outcome


@needs_jail
def test_kernel_objects_behind_descriptors_stay_under_the_descriptor_cap(unrestricted):
    outcome = attempt(
        unrestricted,
        """
        fds = []
        try:
            while len(fds) < 10000:
                fds.append(os.eventfd(0) if len(fds) % 2 else os.memfd_create('x'))
        except OSError:
            pass
        finally:
            for fd in fds:
                os.close(fd)
        result = len(fds)
        """,
    )
    assert outcome.startswith("OK:") and int(outcome.split()[1]) < 64, outcome


@needs_jail
@x86_64_only
@pytest.mark.parametrize(
    "call",
    [
        # prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER): the option's high 32 bits set, the kernel reads 22
        "sc(157, (1 << 32) | 22, 2, 0)",
        "sc(157, (0xFFFF << 48) | 22, 1, 0)",  # strict mode would end the worker at its next syscall
        # seccomp(SECCOMP_GET_ACTION_AVAIL) and SECCOMP_GET_NOTIF_SIZES: the syscall is closed whole
        "sc(317, 2, 0, buf)",
        "sc(317, 3, 0, buf)",
        # timer_create and the legacy epoll_create, by number, with arguments in the high bits
        "sc(222, (1 << 32) | 1, 0, buf)",
        "sc(213, (1 << 40) | 1)",
        # landlock_create_ruleset asking only for the ABI version: every Landlock call is closed after entry
        "sc(444, 0, 0, 1)",
    ],
)
def test_the_newest_seccomp_rules_hold_against_high_bits_and_harmless_looking_modes(unrestricted, call):
    outcome = attempt(unrestricted, f"result = {call}")
    assert outcome.startswith("DENIED: PermissionError"), outcome  # the filter's EPERM, not the kernel's EINVAL
    assert unrestricted.execute("print(len(context))", no_calls).output == "7\n"


@needs_jail
@pytest.mark.parametrize("resource_name", ["RLIMIT_NOFILE", "RLIMIT_SIGPENDING", "RLIMIT_FSIZE"])
def test_the_lowered_limits_cannot_be_raised_even_to_their_own_maximum(unrestricted, resource_name):
    outcome = attempt(
        unrestricted,
        f"""
        import resource
        soft, hard = resource.getrlimit(resource.{resource_name})
        resource.setrlimit(resource.{resource_name}, (hard, hard))  # a no-op through setrlimit: the filter refuses it
        result = resource.getrlimit(resource.{resource_name})
        """,
    )
    assert outcome.startswith("DENIED"), outcome


# --- what the host does with a forged result frame ---------------------------------------------------------


@needs_jail
def test_a_forged_result_with_escaped_surrogates_and_repeated_keys_gives_a_writable_answer(policy_off, tmp_path):
    # The type is "call" first and "result" last (JSON keeps the last); the answer, error and
    # output hold lone surrogates as escapes, a key holds one too.
    body = (
        b'{"type": "call", "fn": "llm_query", "type": "result", "output": "\\udc80out", '
        b'"error": null, "final": "ans\\ud800wer", "\\udfff": 1}'
    )
    replies = [code(forged_frames(body)), code("FINAL('done')")]
    server = FakeOpenAIServer(lambda request: replies.pop(0) if replies else code("FINAL('done')")).start()
    try:
        rlm = RLM(
            model="openai/test-model", api_base=server.base_url, api_key="test", exec_timeout=5.0, sandbox="restricted"
        )
        try:
            answer = rlm.run("q", "ctx").answer
        except RLMError as exc:
            pytest.fail(f"run() raised {type(exc).__name__}: {str(exc)[:300]}")
    finally:
        server.stop()
    answer.encode("utf-8")  # whatever was taken as the answer, the host can write it
    (tmp_path / "answer.txt").write_text(answer, encoding="utf-8")


# --- a hostile program file (RLM(program=PATH)) ------------------------------------------------------------
def _program(**fields) -> dict:
    data = {
        "format": "rlm-program",
        "version": 1,
        "model": "scripted/root",
        "optimizer": "bootstrap",
        "instructions": None,
        "demos": [{"query": "q", "reply": code("FINAL('x')")}],
        "info": {},
    }
    data.update(fields)
    return data


def _run_with_program(path) -> str:
    lm, _ = scripted_lm([code("FINAL('ok')")] * 3)
    return RLM(model=lm, program=path).run("q", "ctx").answer


@pytest.mark.parametrize(
    "payload",
    ["1" * 5000, "[" * 100_000 + "]" * 100_000],
    ids=["integer-past-the-digit-limit", "nested-past-the-parser-stack"],
)
def test_a_program_file_json_cannot_parse_is_a_program_file_error(tmp_path, payload):
    path = tmp_path / "program.json"
    path.write_text(json.dumps(_program())[:-1] + ', "info": ' + payload + "}", encoding="utf-8")
    with pytest.raises(ProgramFileError):
        _run_with_program(path)


@pytest.mark.parametrize(
    "fields",
    [
        {"instructions": "\ud800 be brief"},
        {"demos": [{"query": "q\ud800", "reply": code("FINAL('x')") + "\udfff"}]},
        {"demos": [{"query": "q", "reply": "r", "history": [{"reply": "\udc80", "observation": "o"}]}]},
    ],
    ids=["instructions", "demo", "demo-history"],
)
def test_a_program_files_lone_surrogates_never_end_the_run(tmp_path, fields):
    path = tmp_path / "program.json"
    path.write_text(json.dumps(_program(**fields)), encoding="utf-8")  # ensure_ascii: the surrogates are escapes
    try:
        assert _run_with_program(path) == "ok"
    except (RLMError, UnicodeError) as exc:
        pytest.fail(f"{type(exc).__name__}: {str(exc)[:200]}")


@pytest.mark.parametrize(
    "demo",
    [
        {"query": "q", "reply": "r", "context_info": {"nested": [1, 2, {"x": None}]}},
        {"query": "q", "reply": "r", "context_info": 10**30},
        {"query": "q", "reply": "r", "base": {"query": "injected"}, "zzz": ["w"]},
        {"query": "q", "reply": "r", "history": [{"reply": "a", "observation": "b", "extra": {"y": 1}}]},
    ],
    ids=["context-info-object", "context-info-number", "base-and-extra-keys", "history-extra-field"],
)
def test_a_program_files_odd_demo_fields_never_end_the_run(tmp_path, demo):
    path = tmp_path / "program.json"
    path.write_text(json.dumps(_program(demos=[demo])), encoding="utf-8")
    assert _run_with_program(path) == "ok"


def test_a_program_file_with_nan_info_and_a_list_optimizer_loads(tmp_path):
    path = tmp_path / "program.json"
    path.write_text(json.dumps(_program(info={"score": float("nan")}, optimizer=["x"])), encoding="utf-8")
    assert _run_with_program(path) == "ok"


# --- the batch runner's files ------------------------------------------------------------------------------
@pytest.mark.parametrize("item_id", ["..", "../../etc/cron.d/x", "/abs", ".hidden", "a/../../b", "\ud800", "x" * 500])
def test_a_batch_items_id_never_names_a_file_outside_its_folder(tmp_path, item_id):
    from rlm.batch.execute import safe_name

    name = safe_name(item_id)
    target = (tmp_path / f"{name}.json").resolve()
    assert target.parent == tmp_path.resolve() and len(name) <= 89, name


def test_a_results_file_with_an_overlong_integer_is_a_bad_line_when_a_batch_resumes(tmp_path):
    from rlm.batch.store import ResultStore

    path = tmp_path / "results.jsonl"
    good = json.dumps({"id": "kept", "status": "ok", "answer": "a"})
    path.write_text(good + "\n" + '{"id": "b", "status": "ok", "llm_calls": ' + "9" * 5000 + "}\n", encoding="utf-8")
    with ResultStore(path) as store:
        assert list(store.rows) == ["kept"]  # the line no JSON reader takes is left out, as a torn one is


# --- host parsing of a reply: must stay linear in what the model sent (round 9's rule) ---------------------
COLLIDING_PROSE_FINAL = """
from rlm import RLM
from rlm.testing import scripted_lm

# a - 1000003*k + k*j: every complex hashes alike, so a set of them is built in quadratic time
colliding = "{" + ",".join(f"{-1000003 * k}+{k}j" for k in range(60000)) + "}"
lm, _ = scripted_lm([f"I am done.\\nFINAL({colliding})"] * 3)
assert RLM(model=lm).run("q", "ctx").finish_reason == "final"
"""


def test_a_prose_final_of_colliding_set_members_is_read_in_linear_time():
    # 1.2 MB of reply: a few seconds when linear (import included), past a minute when quadratic.
    assert finishes_within(COLLIDING_PROSE_FINAL, 30), "reading the reply's FINAL took past 30 s"
