"""Twenty-second attack round: with fresh eyes, the Python policy on and the host code of this
session that reads what the model's code made: the context description of a child's slice
(engine/describe.py), the no-match hint that parses the failing line an error quotes
(engine/hints.py), typed answers (engine/answer_types.py) as `rlm ask --output` and `rlm batch`
write them, the madvise/prctl allowlists (sandbox/local/syscall_arguments.py, policy off), and a
`.env` file's keys.

Probed and held (kept below): a long text slice handed to a child is described in bounded size; the
no-match hint names the searched text and takes a failing line too deep to parse as no hint; a typed
answer's set or dict of hash-colliding ints (literal_eval on the host, no timer) costs well under a
second at max_answer_chars; a not-finite number in a typed answer is refused; madvise advice and
prctl options outside the allowlists are refused with their high 32 bits set (the kernel reads the
low 32), and the runtime's own advice still passes.
Probed and not kept as tests (policy on, /tmp/s11/attack22/probe_policy.py): what the offered modules'
objects hand back without an underscore (partial.func, lru_cache's cache_info and cache_parameters,
ChainMap.maps, property.fget, csv's dialect, a Match's re, defaultdict.default_factory, json's
object_hook and cls, namedtuple's module and rename, datetime's format spec, type() of a module
facade): nothing reached a real module, a frame or an unguarded builtin (partial(print).func is the
print collector's bound method; reprs still show heap addresses). Hint lines nested past the parser
(unary chains, parentheses) give SyntaxError, caught. An exception message whose first line imitates
the sandbox's "(at line N: ...)" suffix (the real one then follows on its last line) chooses the text
the hint parses: only hole 2's route, no other harm found.

Four holes, found as strict xfails (reproductions, causes and suggested fixes in
/tmp/s11/attack22/HOLES.md) and closed the same session; what they were:
1. a child's context description quotes its dict keys whole (the listing, the reading hint, and a
   structured document's keys): `recursive_llm("q", {"A" * 2_000_000: "x"})` sends the child's
   model a 4 MB prompt at every step, past `sub_prompt_chars`, which caps every other prompt the
   model's code makes (the query, llm_query, the leaf prompt at max_depth);
2. the no-match hint parses the quoted failing line inside a try, but `ast.unparse`s the searched
   text outside it: an f-string whose expression part holds a control character
   (`re.search(p, f"{'a<0x01>b'}").group()`, Python 3.11) raises ValueError out of `run()`;
3. typed answers keep values no JSON can hold (literal_eval reads complex numbers, bytes, sets,
   Ellipsis, tuple keys): `rlm ask --output list` of `[1j]` ends in a traceback, and `rlm batch`
   with `output: "dict"` of `{(1, 2): 3}` ends the whole batch with TypeError (later items never run);
4. a `.env` may set E2B_API_KEY (it ends in `_API_KEY`), and `sandbox="auto"` then picks E2B: the
   documents and the model's code go to a VM in the account of whoever wrote the `.env`, as round
   20's planted model and key sent them to a stranger's LM account.
The fixes: a description shows a key in at most 80 characters and names a long-keyed document by
position (`context[list(context)[0]]`); the hint takes any failure of parsing or unparsing as no
hint; a typed answer's parsed candidates must be JSON data (text keys; no complex, bytes, sets or
Ellipsis), and the results file keeps a value JSON cannot hold as its text; `sandbox="auto"` picks
E2B only for a key from the user's environment, never for one only a `.env` gave (it warns).
"""

from __future__ import annotations

import time

import pytest

from rlm import RLM
from rlm.engine.answer_types import AnswerType
from rlm.engine.hints import no_match_hint
from rlm.testing import FakeOpenAIServer
from tests.sandbox.conftest import attempt, code, needs_jail, run_with_first_step, x86_64_only

SUB_PROMPT_CHARS = 10_000
# The instructions, the query and the description's fixed text: what a step's prompt holds besides
# the quoted parts of the context (about 3,000 characters today).
PROMPT_OVERHEAD_CHARS = 30_000


def _prompt_sizes_of_a_run(first_step: str) -> list[int]:
    """The size in characters of every prompt a run sent (root and children) whose root's first step
    is `first_step` and whose every later reply is FINAL."""
    replies = [code(first_step)]
    server = FakeOpenAIServer(lambda body: replies.pop(0) if replies else code("FINAL('done')")).start()
    rlm = RLM(
        model="openai/test-model",
        api_base=server.base_url,
        api_key="test",
        exec_timeout=10.0,
        max_iterations=2,
        sub_prompt_chars=SUB_PROMPT_CHARS,
    )
    try:
        rlm.run("q", "ctx")
    finally:
        server.stop()
    return [sum(len(str(m.get("content") or "")) for m in body["messages"]) for body in server.requests]


# --- 1. a child's context description --------------------------------------------------------------------------
@needs_jail
@pytest.mark.parametrize(
    "slice_code",
    [
        '{"A" * 2_000_000: "x"}',  # a document's name
        '[{"K" * 250_000 + str(i): 1 for i in range(8)}]',  # a structured document's keys
    ],
    ids=["dict key", "keys of a document"],
)
def test_a_childs_prompt_stays_within_sub_prompt_chars_whatever_its_slices_keys(slice_code):
    sizes = _prompt_sizes_of_a_run(f'r = recursive_llm("q", {slice_code})')
    assert len(sizes) > 2, "the child never asked its model"
    assert max(sizes) <= SUB_PROMPT_CHARS + PROMPT_OVERHEAD_CHARS, f"prompts of {max(sizes):,} characters"


@needs_jail
def test_a_long_text_slice_is_described_in_bounded_size():
    sizes = _prompt_sizes_of_a_run('r = recursive_llm("q", "line of text\\n" * 200_000)')
    assert len(sizes) > 2 and max(sizes) <= SUB_PROMPT_CHARS + PROMPT_OVERHEAD_CHARS


# --- 2. the no-match hint ----------------------------------------------------------------------------------------
@needs_jail
def test_a_failing_line_the_hint_cannot_unparse_never_ends_the_run():
    # Python 3.11 parses a control character inside an f-string's expression part, but cannot write
    # it back (ast.unparse: "Unable to avoid backslash in f-string expression part").
    step = "import re\nm = re.search('zz', f\"{'a" + chr(1) + "b'}\").group()"
    answer, _ = run_with_first_step(step)
    assert answer == "done"


@pytest.mark.parametrize("searched", ["'a' or " + "-" * 190 + "x", "(" * 150 + "x" + ")" * 150])
def test_a_failing_line_too_deep_to_parse_gives_no_hint_never_an_error(searched):
    error = f"AttributeError: 'NoneType' object has no attribute 'group' (at line 2: re.search(p, {searched}).group())"
    hint = no_match_hint(error)
    assert hint is not None and "re.search" in hint
    assert len(hint) < 1000


def test_the_hint_names_the_searched_text_as_written():
    error = (
        "AttributeError: 'NoneType' object has no attribute 'group' (at line 3: m = re.search(p, lines[4]).group(1))"
    )
    assert "Print lines[4] to see" in (no_match_hint(error) or "")


# --- 3. typed answers ---------------------------------------------------------------------------------------------
@needs_jail
def test_rlm_ask_output_list_of_a_complex_number_never_ends_in_a_traceback(tmp_path, monkeypatch, capsys):
    from rlm.cli.main import main

    monkeypatch.setenv("OPENAI_API_KEY", "test")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "doc.txt").write_text("a short document\n")  # shown whole: the answer needs no output first
    server = FakeOpenAIServer(lambda body: code("FINAL('[1j]')")).start()
    try:
        argv = ["ask", "--model", "openai/test-model", "--api-base", server.base_url, "--sandbox", "restricted"]
        status = main([*argv, "--output", "list", "-c", "doc.txt", "--", "q"])
    finally:
        server.stop()
    err = capsys.readouterr().err
    assert "Traceback" not in err and status in (0, 3), err[-1500:]


@needs_jail
def test_a_typed_answer_with_tuple_keys_never_ends_the_batch(tmp_path):
    from rlm import batch

    server = FakeOpenAIServer(lambda body: code("FINAL('{(1, 2): 3}')")).start()
    items = [
        {"id": "odd", "query": "q", "context": "ctx", "output": "dict"},
        {"id": "later", "query": "q", "context": "ctx"},
    ]
    settings = {"model": "openai/test-model", "api_base": server.base_url, "api_key": "test", "max_iterations": 2}
    try:
        rows = {r.id: r for r in batch(items, out=tmp_path / "r.jsonl", concurrency=1, **settings)}
    finally:
        server.stop()
    assert set(rows) == {"odd", "later"} and rows["later"].error_class is None


def test_a_typed_answer_of_colliding_hashes_is_read_in_bounded_time():
    modulus = 2**61 - 1  # every multiple hashes to 0
    members, size, k = [], 0, 1
    while size < 100_000:  # max_answer_chars: the answer is clipped to it before it is typed
        members.append(str(k * modulus))
        size += len(members[-1]) + 1
        k += 1
    for answer in ("{" + ",".join(members) + "}", "{" + ",".join(f"{m}: 0" for m in members) + "}"):
        started = time.process_time()
        AnswerType(list[int]).refusal(answer)
        AnswerType(dict[int, int]).refusal(answer)
        assert time.process_time() - started < 5.0


@pytest.mark.parametrize("answer", ["[1e400]", "1e400", "nan", "[-1e999]"])
def test_a_typed_answer_that_is_not_finite_is_refused(answer):
    assert AnswerType(list[float] if answer.startswith("[") else float).refusal(answer) is not None


# --- madvise and prctl allowlists (policy off) --------------------------------------------------------------------
MAPPING = (
    "import mmap\nm = mmap.mmap(-1, 1 << 16, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)\n"
    "address = ctypes.addressof(ctypes.c_char.from_buffer(m))\n"
)
HIGH = 1 << 32


@needs_jail
@x86_64_only
@pytest.mark.parametrize(
    "action",
    [
        MAPPING + f"result = sc(28, address, 1 << 16, {HIGH | 12})",  # MADV_MERGEABLE, high bits set
        MAPPING + f"result = sc(28, address, 1 << 16, {HIGH | 3})",  # MADV_WILLNEED
        MAPPING + f"result = sc(28, address, 1 << 16, {HIGH | 21})",  # MADV_PAGEOUT
        MAPPING + "result = sc(28, address, 1 << 16, 25)",  # MADV_COLLAPSE
        MAPPING + "result = sc(28, address, 1 << 16, 102)",  # MADV_GUARD_INSTALL
        MAPPING + f"result = sc(28, address, 1 << 16, {(1 << 64) - 1})",  # -1
        f"result = sc(157, {HIGH | 67}, 1, 0, 0, 0)",  # PR_SET_MEMORY_MERGE
        f"result = sc(157, {HIGH | 1}, 0, 0, 0, 0)",  # PR_SET_PDEATHSIG 0: outlive the host
        "result = sc(157, 0x53564D41, 0, 0, 0, 0)",  # PR_SET_VMA
        f"result = sc(157, {HIGH | 0x59616D61}, 1, 0, 0, 0)",  # PR_SET_PTRACER
        "result = sc(157, 47, 2, 12, 0, 0)",  # PR_CAP_AMBIENT raise
        "result = sc(157, 36, 1, 0, 0, 0)",  # PR_SET_CHILD_SUBREAPER
    ],
)
def test_advice_and_options_outside_the_allowlists_are_refused_whatever_the_high_bits(unrestricted, action):
    report = attempt(unrestricted, action)
    assert report.startswith("DENIED: PermissionError"), report


@needs_jail
@x86_64_only
def test_the_runtimes_own_advice_and_options_still_pass(unrestricted):
    action = MAPPING + (
        "m.write(b'x' * (1 << 16))\n"
        "result = [sc(28, address, 1 << 16, advice) for advice in (4, 8, 14, 15)]\n"  # DONTNEED, FREE, (NO)HUGEPAGE
        "result += [sc(157, 16, buf, 0, 0, 0), sc(157, 39, 0, 0, 0, 0)]\n"  # PR_GET_NAME, PR_GET_NO_NEW_PRIVS
        "result.append(len(bytearray(50 << 20)))"  # the allocator still gets and frees memory
    )
    report = attempt(unrestricted, action)
    assert report.startswith("OK: [0, 0, 0, 0, 0, 1, 52428800]"), report


# --- 4. a .env file's keys ----------------------------------------------------------------------------------------
def test_a_dotenv_in_the_working_folder_never_picks_the_sandbox(tmp_path, monkeypatch):
    pytest.importorskip("e2b")  # without the SDK, "auto" never picks E2B
    from rlm.sandbox.registry import resolve_sandbox_name

    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("E2B_API_KEY=e2b_planted_by_whoever_made_this_folder\n")
    monkeypatch.setenv("E2B_API_KEY", "restored-after-the-test")
    monkeypatch.delenv("E2B_API_KEY")  # the user has no E2B account; the .env's load is undone after the test
    monkeypatch.delenv("RLM_SANDBOX", raising=False)
    rlm = RLM(model="openai/test-model", api_key="the-users-own-key")
    assert resolve_sandbox_name(rlm.config.sandbox) != "e2b"
