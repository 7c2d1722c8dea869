"""Eighteenth attack round, the frame account: its count against the host's real peak (tracemalloc)
for frames of many shapes, sent by the model's code (policy on) or forged (policy off).

Round 18 in six files by topic (test_attacks_round18_*.py; this one: frames). The round found
seven holes as strict xfails (reproductions, causes and suggested fixes in
/tmp/s10/attack18/HOLES.md), all closed the same session.

This topic's holes (numbered as the round's):
1. text of 4-byte UTF-8 characters (emoji) sent by the model's code (policy on) makes the host's
   decode peak at 6 times the frame while the account counts 5: CPython's decoder widens to a UCS4
   buffer of one character per byte before it shrinks to the text (1.2 x the account);
2. the repair of lone surrogates (`rlm.utf8.utf8_values`) runs while the frame's text and message
   both exist and copies each repaired string twice more (its UTF-8 bytes, then those decoded
   through the same wide buffer); none of it is counted: a forged frame of emoji with one "\\ud800"
   escape took 1.6 x the account, a dict of surrogate keys 1.18 x;
6. nested lists ("[[[...]]]", which the model's code sends with the policy on as llm_query_batched
   items) parse to ~1.3 times what the account counts: each "[" is priced at one value (64 bytes),
   but a list holding a value is its object, a GC header and an item array.
The fixes: the channel counts a non-ASCII decode at 6 times the frame (7 since round 19) and a repair
at the parsed size plus that decode again, and a list or dict at two values.
"""

from __future__ import annotations

import pytest

from rlm.sandbox.base import SandboxLimits
from rlm.sandbox.host_memory import HostFrameBudget
from rlm.sandbox.local import LocalSandbox
from tests.sandbox.conftest import SEND_BODY_READ_REPLY, needs_jail, traced_peak
from tests.sandbox.frame_account import call_frame, peak_while_received

N = 200_000
FRAMES_WITHIN_ACCOUNT = {
    "ascii text": b'"' + b"x" * (N * 20) + b'"',
    "latin-1 escapes": b'"' + b"\\u00e9" * (N * 4) + b'"',
    "floats": b"[" + b",".join([b"1.5"] * (N * 2)) + b"]",
    "distinct short strings": b"[" + b",".join(b'"%d"' % i for i in range(N * 2)) + b"]",
    "lone surrogate strings": b"[" + b",".join([b'"\\ud800"'] * (N * 2)) + b"]",
    "distinct keys": b"{" + b",".join(b'"%d":0' % i for i in range(N)) + b"}",
    "empty objects": b"[" + b",".join([b"{}"] * (N * 2)) + b"]",
    "cjk escapes and a lone surrogate": b'"' + b"\\u4e00" * (N * 4) + b'\\ud800"',
}


@pytest.mark.parametrize("value", FRAMES_WITHIN_ACCOUNT.values(), ids=FRAMES_WITHIN_ACCOUNT.keys())
def test_a_frame_of_this_shape_peaks_within_what_the_account_counted(value):
    peak, counted, message = peak_while_received(call_frame(value))
    assert message["fn"] == "llm_query"
    assert peak <= counted + (256 << 10), f"counted {counted:,}, allocated {peak:,}"


def test_a_dict_of_lone_surrogate_keys_peaks_within_what_the_account_counted():
    value = b"{" + b",".join(b'"\\udc00%d":0' % i for i in range(N)) + b"}"
    peak, counted, message = peak_while_received(call_frame(value))
    assert len(message["args"][0]) == N  # every key repaired, none lost
    assert peak <= counted + (256 << 10), f"counted {counted:,}, allocated {peak:,}"


def test_nested_lists_peak_within_what_the_account_counted():
    value = b"[" + b",".join([b"[" * 50 + b"]" * 50] * 10_000) + b"]"  # 500,000 lists, under MAX_CONTAINERS
    peak, counted, message = peak_while_received(call_frame(value))
    assert len(message["args"][0]) == 10_000
    assert peak <= counted + (256 << 10), f"counted {counted:,}, allocated {peak:,}"


ACCOUNT = 64 << 20
# Emoji are 4 bytes in UTF-8 and the frame is counted at 7 times its size while decoded (it was 5
# when this round found the decoder peaking at 6; round 19 found 7): just inside ACCOUNT, so the
# frame is delivered.
EMOJI = ACCOUNT // 7 // 4 - 4096
# A frame that needs repair is counted at its parsed size plus that decode again (8 times): just inside.
EMOJI_REPAIRED = ACCOUNT // 8 // 4 - 4096


def _peak_of_step(box: LocalSandbox, code: str) -> tuple[int, list[str]]:
    seen: list[str] = []

    def handler(fn, args, kwargs):
        seen.append(args[0])
        return "ok"

    peak, result = traced_peak(lambda: box.execute(code, handler))
    assert result.error is None or not seen, result  # refused, or it reached the host whole
    return peak, seen


@needs_jail
def test_emoji_sent_by_the_models_code_never_take_the_host_past_the_account():
    limits = SandboxLimits(exec_timeout=60.0, memory_limit_mb=1024, frame_budget=HostFrameBudget(ACCOUNT))
    with LocalSandbox(limits) as box:  # the Python policy on: any model's code can do this
        box.load("ctx")
        peak, seen = _peak_of_step(box, f"print(llm_query('\\U0001F600' * {EMOJI}))")
    assert seen and len(seen[0]) == EMOJI
    assert peak <= ACCOUNT + (4 << 20), f"allocated {peak:,} for an account of {ACCOUNT:,}"


FORGED_EMOJI_CALL = f"""
import os, struct
emoji = '\\U0001F600'.encode() * {EMOJI_REPAIRED}
body = b'{{"type": "call", "fn": "llm_query", "args": ["' + emoji + b'\\\\ud800"], "kwargs": {{}}}}'
del emoji
{SEND_BODY_READ_REPLY}print(reply[:40])
"""


@needs_jail
def test_a_forged_frame_of_emoji_with_a_lone_surrogate_never_takes_the_host_past_the_account():
    limits = SandboxLimits(exec_timeout=60.0, memory_limit_mb=1024, frame_budget=HostFrameBudget(ACCOUNT))
    with LocalSandbox(limits, python_policy=False) as box:
        box.load("ctx")
        peak, seen = _peak_of_step(box, FORGED_EMOJI_CALL)
    assert seen and seen[0].endswith("?")  # repaired on the way in
    assert peak <= ACCOUNT + (4 << 20), f"allocated {peak:,} for an account of {ACCOUNT:,}"
