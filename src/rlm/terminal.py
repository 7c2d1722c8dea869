"""Text from a run, made safe to show on a terminal.

Answers, printed output, errors and prompts are written by the model's code, which a document's
prompt injection may control. Written to a terminal raw, escape sequences in them act: OSC 52
writes the user's clipboard, OSC 0 retitles the window, cursor moves and erases hide lines, and
bidirectional controls reorder what is read ("Trojan Source"). `terminal_safe` shows each such
character as a `\\uXXXX` escape instead: readable as text, and inside a JSON string (the CLI's
`--json`) the same escape JSON itself uses, so JSON output stays valid and exact.

The library's own printers (`RLM(verbose=True)`, `CallHistory.print`) call it on what they print;
the CLI wraps its stdout and stderr in `TerminalSafeStream`, so nothing it prints, now or later,
needs to remember to.
"""

from __future__ import annotations

import re
from typing import Any, TextIO

from rlm.utf8 import utf8_text

# C0 controls but tab and newline (carriage return too: it overwrites a line), DEL, C1 controls
# (8-bit CSI and OSC), the bidirectional marks, embeddings, overrides and isolates, and lone
# surrogates: a stream whose errors handler is "surrogateescape" (stdout, often) writes "\udc9b"
# as the raw byte 0x9b, a C1 CSI.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def terminal_safe(text: str) -> str:
    """`text` with every character that would control the terminal shown as `\\uXXXX`."""
    return _UNSAFE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def file_safe(json_text: str) -> str:
    """JSON text for the files the library writes (history, batch results, `/save`, programs): lone
    surrogates as '?', as everywhere on the way out (rlm/utf8.py), and every other character that
    would control a terminal as a JSON escape. JSON escapes ESC but leaves C1 controls (8-bit CSI,
    OSC 52) raw, so `cat` of a file a model's text went into handed them to the terminal (attack
    round 18)."""
    return terminal_safe(utf8_text(json_text))


class TerminalSafeStream:
    """A text stream that writes `terminal_safe` text to the stream it wraps.

    `unfiltered` is the wrapped stream, for the library's own control sequences (the batch progress
    line redraws itself with `\\r` and an erase). Every other attribute is the wrapped stream's.
    """

    def __init__(self, unfiltered: TextIO) -> None:
        self.unfiltered = unfiltered

    def write(self, text: str) -> int:
        return self.unfiltered.write(terminal_safe(text))

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.unfiltered, name)
