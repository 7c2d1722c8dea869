"""Eighteenth attack round, terminal controls from the model: `rlm chat`'s /history and /save of an
answer holding escapes, C1 controls and a lone surrogate, and the JSON files the library writes.

Round 18 in six files by topic (test_attacks_round18_*.py; this one: terminal_controls). The round found
seven holes as strict xfails (reproductions, causes and suggested fixes in
/tmp/s10/attack18/HOLES.md), all closed the same session.

This topic's hole (numbered as the round's):
5. C1 control characters (U+0080-U+009F: CSI, OSC) in the model's text are written raw into the
   JSON files the library writes with ensure_ascii=False (--history, `rlm chat /save`; `rlm batch`
   results use the same call): JSON escapes ESC but not these, and `cat` hands them to a terminal.
The fix: the JSON files the library writes pass through terminal_safe (C1 controls as \\uXXXX escapes).
"""

from __future__ import annotations

import contextlib
import io
import json
import sys

import pytest

from rlm import RLM

HOSTILE_ANSWER = (
    "```python\nFINAL('ok' + chr(0xd800) + chr(0x1b) + ']52;c;cm0gLXJmIH4=' + chr(7) + chr(0x9b) + '2J')\n```"
)


def test_chat_history_and_save_of_a_hostile_answer_stay_inert(tmp_path, monkeypatch):
    # OSC 52 (set the terminal's clipboard) and a C1 CSI clear-screen, in the answer /history repeats
    from rlm.cli.main import main
    from rlm.testing import FakeOpenAIServer

    server = FakeOpenAIServer(responder=lambda body: HOSTILE_ANSWER).start()
    context, saved = tmp_path / "c.txt", tmp_path / "chat.json"
    context.write_text("hello")
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"what?\n/save {saved}\n/history\n/quit\n"))
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main(
                ["chat", "--context", str(context), "--model", "openai/test-model", "--api-base", server.base_url]
            )
    finally:
        server.stop()
    assert status == 0, err.getvalue()[-500:]
    shown = out.getvalue()
    assert "-> ok" in shown and not any(c in shown for c in "\x1b\x07\x9b\ud800"), repr(shown)
    text = saved.read_bytes().decode("utf-8")  # written UTF-8-safe
    assert "\x1b" not in text and json.loads(text)[0]["question"] == "what?"


C1_CONTROLS = {chr(code) for code in range(0x80, 0xA0)}
PRINT_C1 = "```python\nprint('out' + chr(0x9b) + '2J' + chr(0x9d) + '52;c;cm0gLXJmIH4=' + chr(0x9c))\n```"
FINAL_C1 = "```python\nFINAL('done' + chr(0x9b) + '2J')\n```"


def _prints_c1_then_answers(body: dict) -> str:
    # step 1 prints CSI and OSC 52 as C1 controls; its output is in step 2's prompt, which answers with one
    return FINAL_C1 if any("52;c;" in str(m.get("content")) for m in body["messages"]) else PRINT_C1


@pytest.mark.parametrize("written_by", ["--history", "chat /save"])
def test_files_the_library_writes_hold_no_raw_c1_controls_from_the_model(tmp_path, monkeypatch, written_by):
    # JSON escapes ESC (C0) but not U+009B (CSI) or U+009D (OSC): `cat` of the file hands them to the terminal
    from rlm.cli.main import main
    from rlm.testing import FakeOpenAIServer

    server = FakeOpenAIServer(responder=_prints_c1_then_answers).start()
    written = tmp_path / "out.json"
    try:
        if written_by == "--history":
            rlm = RLM("openai/test-model", api_base=server.base_url, enable_history=True, history_output_path=written)
            rlm.run("q", "ctx")
        else:
            (tmp_path / "c.txt").write_text("hello")
            monkeypatch.setattr(sys, "stdin", io.StringIO(f"what?\n/save {written}\n/quit\n"))
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                chat = ["chat", "--context", str(tmp_path / "c.txt"), "--model", "openai/test-model"]
                assert main([*chat, "--api-base", server.base_url]) == 0
    finally:
        server.stop()
    text = written.read_text(encoding="utf-8")
    assert "52;c;" in text  # the model's text is there ...
    assert not C1_CONTROLS & set(text), sorted(f"U+{ord(c):04X}" for c in C1_CONTROLS & set(text))  # ... inert
