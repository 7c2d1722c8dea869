"""verbose=True shows the live call tree with step counts."""

from __future__ import annotations

import io

from rlm.tracking.progress import ProgressPrinter


def test_progress_lines_follow_the_tree(make_lm, capsys):
    from rlm import RLM

    root, _ = make_lm(["```python\nprint(recursive_llm('inner', context))\n```", "FINAL(done)"])
    sub, _ = make_lm(["```python\nFINAL('x')\n```"], model="scripted/sub")
    RLM(model=root, recursive_model=sub, max_iterations=5, verbose=True).completion("outer question", "ctx")
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("▶ n") and "outer question" in lines[0]
    assert any(line.startswith("  ▶ ") and "inner" in line for line in lines)
    assert any("step 1/5" in line for line in lines)
    assert lines[-1].startswith("■ ") and "final" in lines[-1]


def test_printer_writes_to_a_given_stream(make_lm):
    from rlm import RLM

    stream = io.StringIO()
    printer = ProgressPrinter(max_iterations=3, stream=stream)
    lm, _ = make_lm(["FINAL(ok)"])
    RLM(model=lm, on_event=printer).completion("q", "ctx")
    assert "■" in stream.getvalue()
