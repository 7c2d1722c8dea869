"""The host's end of the worker channel: deadlines, size caps and validation on every frame."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time

import pytest

from rlm.sandbox.host_memory import VALUE_BYTES, json_values
from rlm.sandbox.local import protocol
from rlm.sandbox.local.channel import ChannelError, WorkerChannel


@pytest.fixture
def pipes():
    """A channel whose 'worker' end is two raw pipe ends the test controls."""
    to_worker_r, to_worker_w = os.pipe()
    from_worker_r, from_worker_w = os.pipe()
    channel = WorkerChannel(to_worker_w, from_worker_r, max_frame_bytes=1 << 20)
    yield channel, to_worker_r, from_worker_w
    for fd in (to_worker_r, to_worker_w, from_worker_r, from_worker_w):
        with contextlib.suppress(OSError):
            os.close(fd)


def soon(seconds: float = 0.5) -> float:
    return time.monotonic() + seconds


def frame(payload: bytes) -> bytes:
    return protocol.header(len(payload)) + payload


def test_non_ascii_text_split_inside_multibyte_runs_arrives_whole(pipes):
    channel, worker_in, _ = pipes
    text = "héllo wörld — 日本語 🙂\n" * 200
    received = bytearray()

    def read_all():
        with os.fdopen(worker_in, "rb", closefd=False) as stream:
            received.extend(protocol.read_frame(stream))

    reader = threading.Thread(target=read_all)
    reader.start()
    channel.send_text(text, soon(5), chunk=7)
    reader.join(5)
    assert received.decode("utf-8") == text


def test_a_worker_that_stops_reading_cannot_block_the_host(pipes):
    channel, _, _ = pipes  # nobody reads the worker's stdin
    started = time.monotonic()
    with pytest.raises(ChannelError, match="did not take"):
        channel.send_payload(b"x" * (8 << 20), soon(0.5))
    assert time.monotonic() - started < 3


def test_half_a_frame_is_an_error_at_the_deadline_not_a_hang(pipes):
    channel, _, worker_out = pipes
    os.write(worker_out, protocol.header(1000) + b"{")
    started = time.monotonic()
    with pytest.raises(ChannelError, match="did not finish"):
        channel.receive(soon(0.5))
    assert time.monotonic() - started < 3


def test_silence_is_a_timeout(pipes):
    channel, _, _ = pipes
    assert channel.receive(soon(0.2)) is None


def test_a_frame_past_the_cap_is_refused_before_it_is_read(pipes):
    channel, _, worker_out = pipes
    os.write(worker_out, protocol.header(1 << 30))
    with pytest.raises(ChannelError, match="limit"):
        channel.receive(soon())


@pytest.mark.parametrize(
    "payload",
    [
        b"[" * 100_000 + b"]" * 100_000,  # nesting past the parser's recursion limit
        b"\xff\xfe not utf-8",
        b"not json",
        b"[1, 2, 3]",  # JSON, but not a message
    ],
    ids=["deep-nesting", "bad-utf8", "not-json", "not-an-object"],
)
def test_malformed_frames_are_channel_errors(pipes, payload):
    channel, _, worker_out = pipes
    channel.max_frame_bytes = 1 << 21
    writer = threading.Thread(target=os.write, args=(worker_out, frame(payload)))
    writer.start()
    with pytest.raises(ChannelError, match=r"malformed|not a message"):
        channel.receive(soon(2))
    writer.join()


def test_a_closed_worker_is_reported(pipes):
    channel, _, worker_out = pipes
    os.write(worker_out, protocol.header(10))
    os.close(worker_out)
    with pytest.raises(ChannelError, match="closed"):
        channel.receive(soon())


def test_lone_surrogates_cross_as_replacement_characters():
    payload = protocol.encode({"output": "a\ud800b"})
    assert json.loads(payload.decode("utf-8")) == {"output": "a?b"}


def test_values_nested_too_deep_are_refused_before_sending():
    deep: list = []
    for _ in range(protocol.MAX_NESTING + 1):
        deep = [deep]
    with pytest.raises(ValueError, match="nested deeper"):
        protocol.encode({"args": deep})
    protocol.encode({"args": [[["fine"]]]})


def test_a_frame_that_would_build_millions_of_objects_on_the_host_is_refused(pipes):
    channel, _, worker_out = pipes
    channel.max_frame_bytes = 8 << 20
    body = b'{"type":"call","args":[' + b"{}," * 1_100_000 + b"{}]}"
    writer = threading.Thread(target=os.write, args=(worker_out, frame(body)))
    writer.start()
    with pytest.raises(ChannelError, match="JSON objects and lists"):
        channel.receive(soon(5))
    writer.join()


def test_brackets_inside_strings_are_text_not_objects(pipes):
    # A JSON document handed to recursive_llm holds millions of "{" in its text and builds no object:
    # refusing it stopped the worker and lost the REPL's variables.
    channel, _, worker_out = pipes
    channel.max_frame_bytes = 32 << 20
    text = '{"id": 1, "tags": [2]}, ' * 600_000  # 1.2 million brackets, all of them text
    body = json.dumps({"type": "call", "args": [text, ["[", {"{": "{"}]]}).encode()
    writer = threading.Thread(target=os.write, args=(worker_out, frame(body)))
    writer.start()
    assert channel.receive(soon(5))["args"][0] == text
    writer.join()


@pytest.mark.parametrize(
    "value",
    [
        ["ab"] * 1000,
        list(range(1000)),
        [{"k": i, "v": [1.5, None, True]} for i in range(200)],
        {"type": "call", "args": ["a, b: c, d: e" * 500, [",", ":", '"', "\\"]]},
        [],
        "",
    ],
    ids=["short-strings", "ints", "nested", "punctuation-in-strings", "empty-list", "empty-string"],
)
def test_the_value_count_bounds_what_parsing_builds(value):
    text = json.dumps(value)
    built = 0
    stack = [json.loads(text)]
    while stack:
        item = stack.pop()
        built += 1
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    # Keys count twice (their dict's table and the parser's key cache hold as much again), and so do
    # lists and dicts (an object with an item array costs about two values).
    keys, containers = text.count(":"), text.count("[") + text.count("{")
    assert built <= json_values(text) <= max(built + keys + containers, len(text) // VALUE_BYTES + 1) + 2


def test_commas_inside_a_dense_string_are_not_counted_as_values():
    csv = json.dumps({"type": "call", "args": ["1,2,3,4\n" * 100_000]})
    assert json_values(csv) < 12  # 300,000 commas, all inside one string
