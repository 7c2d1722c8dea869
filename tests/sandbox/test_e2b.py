"""The E2B adapter, against a faithful fake of the SDK and service (E2B is unreachable here)."""

from __future__ import annotations

import json
import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rlm import RLM, SandboxError
from rlm.sandbox import registry
from rlm.sandbox.base import SandboxLimits
from rlm.sandbox.e2b import E2BSandbox
from rlm.sandbox.e2b.bridge import CALL_MARK, FINAL_MARK, OutputReader, held_bytes
from rlm.sandbox.host_memory import VALUE_BYTES, HostFrameBudget
from tests.conftest import last_user_message
from tests.sandbox.fake_e2b import FakeSandbox, fresh_service


@pytest.fixture
def make_box(tmp_path, monkeypatch):
    fresh_service(monkeypatch)

    def make(limits: SandboxLimits | None = None, **options) -> E2BSandbox:
        return E2BSandbox(limits, api_key="e2b-test", workdir=str(tmp_path / "rlm"), sdk=FakeSandbox, **options)

    yield make
    FakeSandbox.shutdown()


def echo(fn, args, kwargs):
    return f"{fn}:{args}"


def test_context_is_uploaded_once_as_a_file_and_state_persists(make_box):
    box = make_box()
    box.start()
    box.load("alpha beta gamma")
    assert box.execute("words = context.split()", echo).error is None
    assert box.execute("len(words)", echo).output == "3\n"
    fake = FakeSandbox.service.created[0]
    assert [write.path.rsplit("/", 1)[-1] for write in fake.writes] == ["context.txt"]
    assert fake.api_key == "e2b-test"
    box.close()
    assert fake.killed


def test_json_context_arrives_as_data(make_box):
    box = make_box()
    box.load({"a.txt": "alpha"})
    assert box.execute("sorted(context)", echo).output == "['a.txt']\n"
    box.close()


def test_subcalls_are_bridged_to_the_host(make_box):
    box = make_box()
    box.load("ctx")
    result = box.execute("print(llm_query('hi'))\nprint(llm_query_batched(['a', 'b']))", echo)
    assert result.output == "llm_query:['hi']\nllm_query_batched:[['a', 'b']]\n"
    box.close()


def test_host_failures_become_subcall_errors(make_box):
    def failing(fn, args, kwargs):
        raise RuntimeError("provider down")

    box = make_box()
    box.load("ctx")
    code = "try:\n    llm_query('x')\nexcept SubcallError as e:\n    print('caught', e)"
    assert box.execute(code, failing).output == "caught RuntimeError: provider down\n"
    box.close()


def test_final_and_final_var(make_box):
    box = make_box()
    box.load("ctx")
    assert box.execute("FINAL('done')", echo).final_answer == "done"
    assert box.execute("n = 42\nFINAL_VAR('n')", echo).final_answer == "42"
    missing = box.execute("FINAL_VAR('nope')", echo)
    assert missing.final_answer is None and "no variable named 'nope'" in missing.error
    box.close()


def test_errors_are_reported_as_text(make_box):
    box = make_box()
    box.load("ctx")
    assert box.execute("1 / 0", echo).error.startswith("ZeroDivisionError")
    box.close()


def test_timeout_restarts_the_sandbox_with_the_context(make_box):
    box = make_box(SandboxLimits(exec_timeout=0.3))
    box.load("still here")
    result = box.execute("import time\ntime.sleep(3)", echo)
    assert result.restarted and "TimeoutError" in result.error
    created = FakeSandbox.service.created
    assert len(created) == 2 and created[0].killed
    assert [write.path.rsplit("/", 1)[-1] for write in created[1].writes] == ["context.txt"]
    assert box.execute("context", echo).output == "'still here'\n"
    box.close()


def test_a_full_run_uses_one_e2b_sandbox_per_node_and_closes_them(make_lm, make_box):
    from rlm import RLMConfig, RLMModule

    root, root_engine = make_lm(["```python\nprint(recursive_llm('inner', context[:3]))\n```", "FINAL(done)"])
    sub, _ = make_lm(["```python\nFINAL(context.upper())\n```"], model="scripted/sub")
    module = RLMModule(RLMConfig(max_depth=2), root, sub, sandbox_factory=lambda limits: make_box(limits))
    assert module(query="q", context="abcdef").answer == "done"
    assert "ABC" in last_user_message(root_engine.calls[1])
    created = FakeSandbox.service.created
    assert len(created) == 2 and all(box.killed for box in created)


# --- 1. output arrives in kernel flushes, not lines -------------------------------------------------
@pytest.mark.parametrize("seed", range(4))
def test_a_call_after_text_printed_without_a_newline_is_answered(tmp_path, monkeypatch, seed):
    fresh_service(monkeypatch, seed=seed)
    box = E2BSandbox(api_key="k", workdir=str(tmp_path), sdk=FakeSandbox)
    box.load("ctx")
    result = box.execute("print('partial', end='')\nanswer = llm_query('q')\nprint(' end')\nprint(answer)", echo)
    assert result.error is None
    assert result.output == "partial\n end\nllm_query:['q']\n"
    assert box.execute("print('a', end='')\nFINAL('done')", echo).final_answer == "done"
    box.close()
    FakeSandbox.shutdown()


def test_a_final_after_a_slow_partial_line_is_seen(make_box):
    box = make_box()
    box.load("ctx")
    # The kernel flushes 'half' on its own timer before FINAL's marker arrives in a later message.
    result = box.execute("import time\nprint('half', end='')\ntime.sleep(0.3)\nFINAL('ok')", echo)
    assert result.final_answer == "ok" and result.output == "half\n"
    box.close()


_LINES = st.lists(
    st.one_of(
        st.text(alphabet=st.characters(blacklist_characters="\n\x1e"), max_size=12),
        st.just(CALL_MARK + '{"id": "' + "a" * 32 + '", "fn": "llm_query", "args": ["x"]}'),
        st.just(FINAL_MARK + '"done"'),
        st.just(CALL_MARK + "{broken"),
    ),
    max_size=8,
)


@given(lines=_LINES, cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=6))
def test_output_read_in_any_pieces_gives_the_same_lines_and_calls(lines, cuts):
    stream = "".join(f"{line}\n" for line in lines)
    whole_calls: list = []
    whole = OutputReader(lambda call, held: whole_calls.append(call))
    whole.on_stdout(stream)
    whole.finish()
    piece_calls: list = []
    pieces = OutputReader(lambda call, held: piece_calls.append(call))
    bounds = sorted({min(cut, len(stream)) for cut in cuts})
    for start, end in zip([0, *bounds], [*bounds, len(stream)], strict=True):
        pieces.on_stdout(stream[start:end])
    pieces.finish()
    assert (pieces.text(), piece_calls, pieces.final) == (whole.text(), whole_calls, whole.final)
    assert whole.text().count("\n") == sum(1 for line in lines if not line.startswith(('\x1eRLM_CALL {"', FINAL_MARK)))


def test_malformed_markers_are_plain_output(make_box):
    calls = []

    def recording(fn, args, kwargs):
        calls.append(fn)
        return "x"

    box = make_box()
    box.load("ctx")
    code = (
        "print('\\x1eRLM_CALL {not json')\n"
        'print(\'\\x1eRLM_CALL \' + \'{"id": "../../etc/x", "fn": "llm_query", "args": []}\')\n'
        "print('\\x1eRLM_FINAL 42')\n"
        "print('still running')"
    )
    result = box.execute(code, recording)
    assert result.error is None and result.final_answer is None and calls == []
    assert result.output.split("\n") == [
        "\x1eRLM_CALL {not json",
        '\x1eRLM_CALL {"id": "../../etc/x", "fn": "llm_query", "args": []}',
        "\x1eRLM_FINAL 42",
        "still running",
        "",
    ]
    box.close()


def test_stderr_is_part_of_the_output(make_box):
    box = make_box()
    box.load("ctx")
    result = box.execute("import sys\nprint('to stderr', file=sys.stderr)", echo)
    assert result.output == "to stderr\n"
    box.close()


# --- 5. details ----------------------------------------------------------------------------------------
def test_non_ascii_replies_arrive_intact_whatever_the_sandbox_locale(make_box):
    box = make_box()
    box.load("ctx")
    result = box.execute("FINAL(llm_query('q'))", lambda fn, args, kwargs: "héllo ✓ 日本")
    assert result.final_answer == "héllo ✓ 日本"
    box.close()


def test_code_that_reassigns_stdout_keeps_the_bridge(make_box):
    box = make_box()
    box.load("ctx")
    code = "import io, sys\nsys.stdout = io.StringIO()\nprint('hidden')\nFINAL(llm_query('q'))"
    assert box.execute(code, echo).final_answer == "llm_query:['q']"
    box.close()


def test_results_and_errors_count_against_the_step_cap_as_printed_text_does():
    from types import SimpleNamespace

    reader = OutputReader(lambda call, held: None, max_step_bytes=2_000)
    reader.on_result(SimpleNamespace(text="x" * 500, json={"rows": ["y" * 500]}, is_main_result=True))
    assert not reader.too_much  # ~1,000 bytes and two messages' overhead
    reader.on_error(SimpleNamespace(name="ValueError", value="z" * 400, traceback="z" * 400))
    assert reader.too_much


def test_held_bytes_walks_a_deeply_nested_message_without_recursion():
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    # every value an object (the dict, 100,001 lists, three strings), and the strings' characters
    assert held_bytes({"data": deep, "text": "é" * 10}) == (1 + 100_001 + 3) * VALUE_BYTES + 4 + 4 + 4 * 10


# --- selection -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("sandbox", "key_from", "usable"),
    [
        ("e2b", "shell", True),
        ("e2b", "dotenv", True),  # the user named e2b: the key is theirs to use
        ("auto", "shell", True),
        ("auto", "dotenv", False),  # a .env may come with the documents being read
        ("auto", None, False),
        ("restricted", "shell", False),
    ],
)
def test_who_may_use_an_e2b_key(monkeypatch, sandbox, key_from, usable):
    # One rule for a run (registry._auto) and for what a Ray batch sends its workers.
    # dotenv_keys records each key a .env set, with its value; the record is restored after the test
    monkeypatch.setattr("rlm.dotenv_keys._loaded", {"E2B_API_KEY": "e2b-key-123"} if key_from == "dotenv" else {})
    monkeypatch.delenv("E2B_API_KEY", raising=False)
    if key_from:
        monkeypatch.setenv("E2B_API_KEY", "e2b-key-123")
    assert registry.may_use_e2b_key(sandbox) is usable


def test_explicit_e2b_without_key_is_a_clear_error(monkeypatch, make_lm):
    monkeypatch.delenv("E2B_API_KEY", raising=False)
    lm, _ = make_lm([])
    with pytest.raises(SandboxError, match="set E2B_API_KEY"):
        RLM(model=lm, sandbox="e2b")


def test_explicit_e2b_without_the_sdk_is_a_clear_error(monkeypatch, make_lm):
    import builtins

    real_import = builtins.__import__

    def no_e2b(name, *args, **kwargs):
        if name.startswith("e2b_code_interpreter"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setenv("E2B_API_KEY", "k")
    monkeypatch.setattr(builtins, "__import__", no_e2b)
    lm, _ = make_lm([])
    with pytest.raises(SandboxError, match=r'pip install -e "\.\[e2b\]"'):
        RLM(model=lm, sandbox="e2b")


def test_auto_picks_e2b_when_configured_and_restricted_otherwise(monkeypatch):
    monkeypatch.delenv("RLM_SANDBOX", raising=False)
    monkeypatch.delenv("E2B_API_KEY", raising=False)
    assert registry.resolve_sandbox_name("auto") == "restricted"
    monkeypatch.setenv("E2B_API_KEY", "k")
    assert registry.resolve_sandbox_name("auto") == "e2b"
    monkeypatch.setenv("RLM_SANDBOX", "restricted")
    assert registry.resolve_sandbox_name(None) == "restricted"
    assert registry.resolve_sandbox_name("local") == "restricted"


def test_auto_falls_back_with_a_warning_when_the_sdk_is_missing(monkeypatch, caplog):
    def missing():
        raise SandboxError("the E2B SDK is not installed")

    monkeypatch.setenv("E2B_API_KEY", "k")
    monkeypatch.setitem(registry._CHECKS, "e2b", missing)
    registry._warned.clear()
    with caplog.at_level(logging.WARNING):
        assert registry.resolve_sandbox_name("auto") == "restricted"
    assert "using the local restricted sandbox" in caplog.text


def test_the_modules_the_instructions_name_are_bound_before_the_first_step(make_box):
    box = make_box()
    box.load("a b a")
    result = box.execute("print(collections.Counter(context.split())['a'], re.findall('b', context))", echo)
    assert result.error is None and result.output == "2 ['b']\n", result


def test_output_past_the_limit_keeps_its_head_and_tail_and_says_how_much_was_cut():
    reader = OutputReader(lambda call, held: None, output_limit=100)
    for number in range(10_000):
        reader.on_stdout(f"line {number}\n")
    reader.finish()
    text = reader.text()
    assert text.startswith("line 0\nline 1\n") and text.endswith("line 9999\n") and len(text) < 300
    assert "characters cut" in text


def test_a_line_too_long_for_a_marker_is_plain_output_up_to_its_newline():
    calls: list = []
    reader = OutputReader(lambda call, held: calls.append(call), output_limit=50, max_line_chars=1_000)
    reader.on_stdout(CALL_MARK)  # a marker's start, never finished within the cap
    for _ in range(100):
        reader.on_stdout("x" * 100)
    reader.on_stdout("\nafter\n")
    reader.finish()
    assert calls == [] and reader.text().endswith("after\n")


def test_a_call_waiting_for_the_host_counts_against_the_runs_account_until_answered():
    budget = HostFrameBudget(10_000)
    held_calls: list = []
    reader = OutputReader(lambda call, held: held_calls.append(held), budget=budget)
    marker = CALL_MARK + json.dumps({"id": "a" * 32, "fn": "llm_query", "args": ["ab"] * 50})
    reader.on_stdout(marker + "\n")
    assert held_calls and budget.held_bytes > held_calls[0] >= 50 * VALUE_BYTES  # and what was streamed
    reader.on_stdout(CALL_MARK + json.dumps({"id": "b" * 32, "fn": "llm_query", "args": ["ab"] * 500}) + "\n")
    assert len(held_calls) == 1 and "RLM_CALL" in reader.text()  # past the account: plain output
    reader.answered(held_calls[0])
    reader.close()
    reader.on_stdout(marker + "\n")  # after the step: ignored, never counted
    assert budget.held_bytes == 0 and len(held_calls) == 1


def test_a_step_printing_past_its_share_is_reported_once_and_its_count_freed_at_the_end():
    budget = HostFrameBudget(1 << 20)
    stopped: list = []
    reader = OutputReader(lambda call, held: None, budget=budget, on_too_much=lambda: stopped.append(1))
    for _ in range(300):
        reader.on_stdout("x" * 10_000 + "\n")
    assert stopped == [1] and reader.too_much and budget.held_bytes <= 1 << 20
    reader.close()
    assert budget.held_bytes == 0


async def test_a_cancelled_run_ends_its_e2b_step_at_once_and_creates_no_new_sandbox(make_lm, make_box):
    import asyncio
    import contextlib
    import time

    from rlm import RLMConfig, RLMModule

    root, _ = make_lm(["```python\nwhile True:\n    pass\n```"])
    module = RLMModule(RLMConfig(exec_timeout=120.0), root, root, sandbox_factory=lambda limits: make_box(limits))
    started = time.perf_counter()
    task = asyncio.create_task(module.acall(query="q", context="abc"))
    await asyncio.sleep(2.0)  # the step spins in its sandbox
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert time.perf_counter() - started < 60  # far below the step's 120 s limit
    created = FakeSandbox.service.created
    assert len(created) == 1 and created[0].killed  # closed, and not replaced
