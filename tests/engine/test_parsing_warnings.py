"""Parsing the model's code and answers on the host never warns on the user's stderr."""

from __future__ import annotations

import subprocess
import sys

PROBE = r"""
from rlm.engine.answer_types import _candidates
from rlm.engine.hints import not_indexable_hint
from rlm.engine.parsing import parse_code

assert parse_code("import re\nm = re.search('\\d+', context)") is not None
assert "\\d" in _candidates("'\\d'")
not_indexable_hint("TypeError: 'map' object is not subscriptable (at line 1: x = map(f, '\\d')[0])")
print("parsed")
"""


def test_invalid_escapes_in_the_models_text_raise_no_warning():
    # Python warns "invalid escape sequence '\d'" while parsing (SyntaxWarning from 3.12); the text is
    # the model's. A fresh process, because pytest's own warning filters would hide the library's;
    # `-W error` makes any warning that got through an error.
    done = subprocess.run([sys.executable, "-W", "error", "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout == "parsed\n" and done.stderr == "", done.stderr
