"""The step's printed output: `print` in the model's code writes into an OutputBuffer.

Loaded inside the worker process as a top-level module, like `policy`, which hands PrintCollector
to the code as RestrictedPython's `_print_`; the E2B adapter's host side keeps a step's output in an
OutputBuffer too. It imports nothing outside the standard library.
"""

from __future__ import annotations

from typing import Any


class OutputBuffer:
    """Collects printed text, keeping at most `limit` characters of head and of tail.

    A 100 MB print must not grow the worker: text past the head is kept only as a trimmed tail.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.head: list[str] = []
        self.head_len = 0
        # The tail's pieces, cut back to `limit` characters once they pass twice that: rebuilding
        # it on every write cost `limit` characters a line (attack round 12: seven million empty
        # lines held the E2B reader, which keeps a step's output in one of these, for 25 s).
        self.tail_pieces: list[str] = []
        self.tail_len = 0
        self.total = 0

    def write(self, text: str) -> None:
        # Kept as exact str: the buffer is read after the step, when no method of a str subclass
        # the model made may run.
        if type(text) is not str:
            text = str.__str__(text) if issubclass(type(text), str) else str.__str__(str(text))
        if not text:
            return
        self.total += len(text)
        room = self.limit - self.head_len
        if room > 0:
            self.head.append(text[:room])
            self.head_len += min(room, len(text))
            text = text[room:]
        if text:
            piece = text[-self.limit :]
            self.tail_pieces.append(piece)
            self.tail_len += len(piece)
            if self.tail_len > 2 * self.limit:
                self._trim_tail()

    def _trim_tail(self) -> None:
        tail = "".join(self.tail_pieces)[-self.limit :]
        self.tail_pieces, self.tail_len = [tail], len(tail)

    def getvalue(self) -> str:
        head = "".join(self.head)
        self._trim_tail()
        tail = self.tail_pieces[0]
        if not tail:
            return head
        hidden = self.total - len(head) - len(tail)
        gap = f"\n... [{hidden} characters cut] ...\n" if hidden > 0 else ""
        return head + gap + tail


class PrintCollector:
    """RestrictedPython's `_print_` hook, writing into the step's OutputBuffer."""

    buffer: OutputBuffer | None = None

    def __init__(self, _getattr_: Any = None) -> None:
        pass

    def _call_print(self, *objects: Any, **kwargs: Any) -> None:
        kwargs.pop("file", None)  # printing to other files is not offered
        kwargs.pop("flush", None)
        if PrintCollector.buffer is not None:
            print(*objects, file=PrintCollector.buffer, **kwargs)
