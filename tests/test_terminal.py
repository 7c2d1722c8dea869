"""Text from the model's code reaches a terminal only with its control characters made visible."""

from __future__ import annotations

import io
import json

from rlm.events import NodeFinished
from rlm.terminal import TerminalSafeStream, terminal_safe
from rlm.tracking.history import CallHistory
from rlm.tracking.progress import ProgressPrinter

HOSTILE = "42\x1b]52;c;Y3VybA==\x07\x1b[2J\r\x9b1A\u202eevil\u2066"


def test_controls_are_shown_as_escapes_and_plain_text_is_untouched():
    assert terminal_safe(HOSTILE) == "42\\u001b]52;c;Y3VybA==\\u0007\\u001b[2J\\u000d\\u009b1A\\u202eevil\\u2066"
    assert terminal_safe("a\udc9b1A") == "a\\udc9b1A"  # "surrogateescape" would write the raw byte 0x9b (CSI)
    ordinary = "Zürich — 3 lines\n\ttabbed, emoji 🙂, CJK 東京"
    assert terminal_safe(ordinary) == ordinary


def test_json_through_the_cli_stream_stays_valid_and_exact():
    data = {"answer": HOSTILE}
    out = io.StringIO()
    TerminalSafeStream(out).write(json.dumps(data, ensure_ascii=False))  # what `rlm ask --json` prints
    assert not any(c in out.getvalue() for c in "\x1b\x07\x9b\u202e")
    assert json.loads(out.getvalue()) == data


def test_the_stream_hands_its_own_redraws_to_the_stream_it_wraps():
    out = io.StringIO()
    safe = TerminalSafeStream(out)
    print("answer:", HOSTILE, file=safe)
    safe.unfiltered.write("\r\x1b[K")  # the batch progress line's own redraw
    assert out.getvalue().endswith("\\u2066\n\r\x1b[K")
    assert safe.getvalue() == out.getvalue()  # other attributes are the wrapped stream's


def test_verbose_progress_and_the_history_print_show_no_controls():
    out = io.StringIO()
    ProgressPrinter(max_iterations=3, stream=out)(
        NodeFinished(node_id="n0", depth=0, answer=HOSTILE, finish_reason="final", iterations=1, duration_s=0.1)
    )
    history = CallHistory()
    history.records.append({
        "time": "t", "node_id": "n0", "depth": 0, "purpose": "root", "model": "m", "prompt_tokens": 1,
        "completion_tokens": 1, "cost": None, "latency_s": 0.1, "error": HOSTILE,
        "messages": [{"role": "assistant", "content": HOSTILE}], "output": HOSTILE,
    })  # fmt: skip
    history.print(detailed=True, file=out)
    shown = out.getvalue()
    assert "42\\u001b]52" in shown
    assert not any(c in shown for c in "\x1b\x07\r\x9b\u202e\u2066")


def test_an_unexpected_error_out_of_a_command_prints_its_traceback_through_the_filter(monkeypatch, capsys):
    import rlm.cli.main as cli

    def crash(args):
        raise RuntimeError("answer was " + HOSTILE)

    monkeypatch.setattr(cli, "view", crash)
    assert cli.main(["view", "whatever.json"]) == 1
    shown = capsys.readouterr().err
    assert "RuntimeError: answer was 42\\u001b]52" in shown and "Traceback" in shown
    assert "\x1b" not in shown
