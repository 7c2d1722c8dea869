"""Eighteenth attack round: the frame account against the host's real peak for frames of many
shapes (tracemalloc), kernel objects a jailed worker (policy off) pins through mappings of files it
may read, its own pipes, the bundled model server's listener after the first check, `rlm view
--html` of hostile node attributes, and the user's API key in provider error text.

Seven holes, found as strict xfails (reproductions, causes and suggested fixes in
/tmp/s10/attack18/HOLES.md) and closed the same session; what they were:
1. text of 4-byte UTF-8 characters (emoji) sent by the model's code (policy on) makes the host's
   decode peak at 6 times the frame while the account counts 5: CPython's decoder widens to a UCS4
   buffer of one character per byte before it shrinks to the text (1.2 x the account);
2. the repair of lone surrogates (`rlm.utf8.utf8_values`) runs while the frame's text and message
   both exist and copies each repaired string twice more (its UTF-8 bytes, then those decoded
   through the same wide buffer); none of it is counted: a forged frame of emoji with one "\\ud800"
   escape took 1.6 x the account, a dict of surrogate keys 1.18 x;
3. the bundled server's listener is checked once per process: after that server dies, another
   local user's process on its port receives every later prompt of that process (the document);
4. a provider's error text that quotes the API key (what `tracking/redact.py` exists for) reaches
   the model's code unredacted (llm_query's exception, llm_query_batched's "Error: ..." item), and
   from there the answer and the history file;
5. C1 control characters (U+0080-U+009F: CSI, OSC) in the model's text are written raw into the
   JSON files the library writes with ensure_ascii=False (--history, `rlm chat /save`; `rlm batch`
   results use the same call): JSON escapes ESC but not these, and `cat` hands them to a terminal;
6. nested lists ("[[[...]]]", which the model's code sends with the policy on as llm_query_batched
   items) parse to ~1.3 times what the account counts: each "[" is priced at one value (64 bytes),
   but a list holding a value is its object, a GC header and an item array;
7. an api_key given in code (`RLM(api_key=...)`) is moved into the server engine (models/resolve.py),
   so the redaction of events' error fields, which looks for it in the LM's kwargs, misses it: the
   history file's error field holds the key (a key from the environment is redacted).
The fixes: the channel counts a non-ASCII decode at 6 times the frame and a repair at the parsed
size plus that decode again, and a list or dict at two values; an LM error's text is redacted
where the library's error is built (models/errors.py), with the engine's key among the secrets;
the JSON files the library writes pass through terminal_safe (C1 controls as \\uXXXX escapes); a
server record's guard pid must still run our guard, and the listener is checked again whenever an
RLM asks for the server and before each request (models/server_engine.py `before_request`).
"""

from __future__ import annotations

import contextlib
import gc
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import tracemalloc
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from rlm import RLM
from rlm.errors import ConfigurationError
from rlm.sandbox.base import SandboxLimits
from rlm.sandbox.host_memory import HostFrameBudget
from rlm.sandbox.local import LocalSandbox, jail, protocol
from rlm.sandbox.local.channel import WorkerChannel
from rlm.sandbox.local.kernel_memory import MAX_MAPPINGS
from tests.sandbox.conftest import PROBE_REPORT, RAW, attempt, no_calls, x86_64_only

needs_jail = pytest.mark.skipif(not jail.probe().available, reason=f"no OS jail here: {jail.probe().problem}")


# --- the frame account against what the host really allocates -----------------------------------------------
class _PeakBudget(HostFrameBudget):
    """The run's account, remembering the most it ever counted."""

    peak = 0

    def exchange(self, held: int, size: int) -> bool:
        taken = super().exchange(held, size)
        self.peak = max(self.peak, self.held_bytes)
        return taken


def _received(payload: bytes) -> tuple[int, int, dict]:
    """(tracemalloc's peak while the host's channel reads `payload` as one frame, the account's peak, the message)."""
    from_worker, worker_end = os.pipe()
    to_worker, unused = os.pipe()
    budget = _PeakBudget(1 << 40)
    channel = WorkerChannel(unused, from_worker, max_frame_bytes=1 << 40, budget=budget)

    def worker() -> None:
        with os.fdopen(worker_end, "wb") as out:
            out.write(protocol.header(len(payload)) + payload)

    writer = threading.Thread(target=worker)
    writer.start()
    gc.collect()
    tracemalloc.start()  # the host's own allocations, exactly: no sampling
    try:
        start = tracemalloc.get_traced_memory()[0]
        message = channel.receive(time.monotonic() + 60)
        peak = tracemalloc.get_traced_memory()[1] - start
    finally:
        tracemalloc.stop()
        writer.join()
        for fd in (from_worker, to_worker, unused):
            os.close(fd)
    assert isinstance(message, dict)
    return peak, budget.peak, message


def _frame(value: bytes) -> bytes:
    return b'{"type": "call", "fn": "llm_query", "args": [' + value + b'], "kwargs": {}}'


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
    peak, counted, message = _received(_frame(value))
    assert message["fn"] == "llm_query"
    assert peak <= counted + (256 << 10), f"counted {counted:,}, allocated {peak:,}"


def test_a_dict_of_lone_surrogate_keys_peaks_within_what_the_account_counted():
    value = b"{" + b",".join(b'"\\udc00%d":0' % i for i in range(N)) + b"}"
    peak, counted, message = _received(_frame(value))
    assert len(message["args"][0]) == N  # every key repaired, none lost
    assert peak <= counted + (256 << 10), f"counted {counted:,}, allocated {peak:,}"


def test_nested_lists_peak_within_what_the_account_counted():
    value = b"[" + b",".join([b"[" * 50 + b"]" * 50] * 10_000) + b"]"  # 500,000 lists, under MAX_CONTAINERS
    peak, counted, message = _received(_frame(value))
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

    tracemalloc.start()
    try:
        result = box.execute(code, handler)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
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
os.write(4, struct.pack('>I', len(body)))
view = memoryview(body)
while view:
    view = view[os.write(4, view):]
del body, view
(size,) = struct.unpack('>I', os.read(3, 4))
reply = b''
while len(reply) < size:
    reply += os.read(3, size - len(reply))
print(reply[:40])
"""


@needs_jail
def test_a_forged_frame_of_emoji_with_a_lone_surrogate_never_takes_the_host_past_the_account():
    limits = SandboxLimits(exec_timeout=60.0, memory_limit_mb=1024, frame_budget=HostFrameBudget(ACCOUNT))
    with LocalSandbox(limits, python_policy=False) as box:
        box.load("ctx")
        peak, seen = _peak_of_step(box, FORGED_EMOJI_CALL)
    assert seen and seen[0].endswith("?")  # repaired on the way in
    assert peak <= ACCOUNT + (4 << 20), f"allocated {peak:,} for an account of {ACCOUNT:,}"


# --- OS jail alone: mappings of files the worker may read, and its own pipes ----------------------------------
def _file_mappings(count: int) -> str:
    """Map one page of a readable file `count` times, each through a descriptor of its own, then closed:
    every mapping holds its own struct file (and VMA) in the kernel."""
    return f"""
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
mapped = 0
for i in range({count}):
    fd = os.open(os.__file__, os.O_RDONLY)
    address = libc.mmap(None, 4096, 0, 2, fd, 0)  # PROT_NONE, MAP_PRIVATE
    os.close(fd)
    if address in (None, ctypes.c_void_p(-1).value):
        break
    mapped += 1
result = mapped
"""


@needs_jail
def test_a_worker_holding_files_open_through_many_mappings_is_replaced():
    # 16,000 such mappings held 6 MB of unreclaimable slab (measured with /proc/meminfo): past the
    # mapping bound the worker must be replaced, and the run's context be there again.
    with LocalSandbox(SandboxLimits(exec_timeout=30.0, memory_limit_mb=256), python_policy=False) as box:
        box.load("ctx")
        built = box.execute(
            "try:\n" + textwrap.indent(RAW + _file_mappings(MAX_MAPPINGS + 2000), "    ") + PROBE_REPORT,
            no_calls,
        )
        later = box.execute("print('result' in dir(), len(context))", no_calls)
    assert built.error is not None and "mappings" in built.error, built
    assert later.output == "False 3\n", later  # a fresh worker, holding the context


@needs_jail
@x86_64_only
@pytest.mark.parametrize("fd", [3, 4])
def test_the_worker_cannot_grow_its_channels_pipes_past_the_unprivileged_maximum(unrestricted, fd):
    # F_SETPIPE_SZ (1031) is allowed: a pipe's buffer is kernel memory outside the worker's cap
    outcome = attempt(unrestricted, f"result = fcntl.fcntl({fd}, 1031, 256 << 20)")
    assert outcome.startswith("DENIED: PermissionError"), outcome
    assert unrestricted.execute("print(len(context))", no_calls).output == "7\n"


# --- rlm view --html of hostile node attributes ------------------------------------------------------------------
def _graph(nodes: list, edges: list) -> dict:
    return {"directed": True, "multigraph": False, "nodes": nodes, "edges": edges}


HOSTILE_GRAPHS = {
    "x as markup": _graph([{"id": "r", "x": "</script><script>alert(1)</script>"}], []),
    "x as a list": _graph([{"id": "r", "x": [1, 2]}, {"id": "a", "x": [3]}], [{"source": "r", "target": "a"}]),
    "y as null": _graph([{"id": "r", "y": None}], []),
    "status as markup": _graph([{"id": "r", "status": "<img src=x onerror=alert(1)>"}], []),
    "__proto__ id": _graph([{"id": "__proto__", "status": "constructor", "depth": "x"}], []),
    "edge to a missing node": _graph([{"id": "r"}], [{"source": "r", "target": "ghost"}]),
    "orders of mixed types": _graph(
        [{"id": "r"}, {"id": "a"}, {"id": "b"}],
        [{"source": "r", "target": "a", "order": "z"}, {"source": "r", "target": "b", "order": 1}],
    ),
    "orders unorderable": _graph(
        [{"id": "r"}, {"id": "a"}, {"id": "b"}],
        [{"source": "r", "target": "a", "order": {}}, {"source": "r", "target": "b", "order": {}}],
    ),
    "a cycle": _graph([{"id": "r"}, {"id": "a"}], [{"source": "r", "target": "a"}, {"source": "a", "target": "r"}]),
    "template markers": _graph([{"id": "__DATA__", "query": "__TITLE__ __DATA__"}], []),
    "unhashable finish": _graph([{"id": "r", "finish_reason": {"a": 1}, "error": {"b": 2}}], []),
}


@pytest.mark.parametrize("graph", HOSTILE_GRAPHS.values(), ids=HOSTILE_GRAPHS.keys())
def test_rlm_view_html_of_hostile_node_attributes_refuses_or_writes_one_data_block(tmp_path, graph):
    from rlm.cli.main import main

    source, page_path = tmp_path / "g.json", tmp_path / "g.html"
    source.write_text(json.dumps(graph))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(["view", str(source), "--html", str(page_path)])
    assert status in (0, 2) and "Traceback" not in err.getvalue(), err.getvalue()[-500:]
    if status == 0:
        page = page_path.read_text(encoding="utf-8")
        start = page.index('id="graph-data">') + len('id="graph-data">')
        assert page.count("</script>") == 2  # the data block's and the script's: nothing closed early
        assert page.count('id="graph-data"') == 1
        json.loads(page[start : page.index("</script>", start)])  # the page can parse its data


# --- rlm chat: /history and /save of an answer holding terminal controls and a lone surrogate -------------------
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


# --- the user's API key in a provider's error text ----------------------------------------------------------------
KEY = "sk-test-SECRETKEY1234567890abcdef"


def _provider_quoting_the_key(root_code: str) -> ThreadingHTTPServer:
    """An OpenAI-compatible server: the root model's reply runs `root_code`; a sub-call's prompt
    ("SUBCALL-TRIGGER") is refused with a 400 whose message quotes the request's key."""

    class Provider(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            sub_call = body["messages"][-1]["content"] == "SUBCALL-TRIGGER"
            if sub_call:
                key = self.headers.get("Authorization", "").split()[-1]
                status, payload = 400, {"error": {"message": f"key {key} may not use this model", "code": "bad"}}
            else:
                text = f"Running.\n```python\n{root_code}\n```"
                choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                usage = {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}
                status, payload = 200, {"object": "chat.completion", "choices": [choice], "usage": usage}
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Provider)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.mark.parametrize(
    "root_code",
    [
        'r = llm_query_batched(["SUBCALL-TRIGGER"])\nFINAL(r[0])',
        'try:\n    llm_query("SUBCALL-TRIGGER")\nexcept Exception as e:\n    FINAL(str(e))',
    ],
    ids=["batched", "single"],
)
def test_the_api_key_quoted_by_a_provider_never_reaches_the_models_code(tmp_path, root_code):
    server = _provider_quoting_the_key(root_code)
    try:
        rlm = RLM(
            "openai/test-model",
            api_key=KEY,
            api_base=f"http://127.0.0.1:{server.server_port}/v1",
            enable_history=True,
            history_output_path=tmp_path / "history.json",
            max_iterations=3,
            max_retry_wait_s=1,
        )
        answer = str(rlm.run("What failed?", "ctx").answer)
    finally:
        server.shutdown()
        server.server_close()
    assert "may not use this model" in answer  # the error did reach the model's code
    assert KEY not in answer
    assert KEY not in (tmp_path / "history.json").read_text(encoding="utf-8")


def test_an_api_key_given_in_code_is_redacted_from_the_history_files_error_fields(tmp_path):
    server = _provider_quoting_the_key('r = llm_query_batched(["SUBCALL-TRIGGER"])\nFINAL("done")')
    try:
        rlm = RLM(
            "openai/test-model",
            api_key=KEY,
            api_base=f"http://127.0.0.1:{server.server_port}/v1",
            enable_history=True,
            history_output_path=tmp_path / "history.json",
            max_retry_wait_s=1,
        )
        assert rlm.run("What failed?", "ctx").answer == "done"
    finally:
        server.shutdown()
        server.server_close()
    errors = [record["error"] for record in json.loads((tmp_path / "history.json").read_text()) if record["error"]]
    assert errors and all("may not use this model" in error for error in errors)  # the failed sub-call is there
    assert not [error for error in errors if KEY in error], errors  # calls.py redacts this field: with which keys?


class _RefusesTheKey(BaseHTTPRequestHandler):
    """A provider that answers every request 401, quoting the key it was sent."""

    protocol_version = "HTTP/1.1"

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        key = self.headers.get("Authorization", "").split()[-1]
        data = json.dumps({"error": {"message": f"Incorrect API key provided: {key}", "code": "invalid_api_key"}})
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data.encode())

    def log_message(self, *args):
        pass


def test_rlm_ask_never_prints_the_environments_key_quoted_by_a_provider(tmp_path, monkeypatch):
    # what a CI job's log keeps
    from rlm.cli.main import main

    server = ThreadingHTTPServer(("127.0.0.1", 0), _RefusesTheKey)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.chdir(tmp_path)  # no .env file of the developer's
    (tmp_path / "c.txt").write_text("hello")
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main(["ask", "q", "--context", "c.txt", "--model", "openai/test-model", "--api-base",
                           f"http://127.0.0.1:{server.server_port}/v1"])  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()
    assert status != 0 and "APIKeyNotFoundError" in err.getvalue()
    assert KEY not in err.getvalue() + out.getvalue(), err.getvalue()[-400:]


# --- the bundled model server: its listener after the first check -------------------------------------------------
LISTENER = r"""
import encodings.idna, http.server, json, os, sys
import socket
port, model_id, seen, who = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
address = sys.argv[5] if len(sys.argv) > 5 else "127.0.0.1"

class Server(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _send(self, payload):
        body = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self._send({"object": "list", "data": [{"id": model_id, "object": "model"}]})

    def do_POST(self):
        request = self.rfile.read(int(self.headers["Content-Length"]))
        with open(seen, "ab") as out:
            out.write(request + b"\n")
        text = "```python\nFINAL('chosen by another user')\n```"
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        self._send({"object": "chat.completion", "choices": [choice],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})

    def log_message(self, *args):
        pass

if who == "other-user":
    os.setgid(65534)
    os.setuid(65534)
class Listener(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6 if ":" in address else socket.AF_INET

    def server_bind(self):
        if self.address_family == socket.AF_INET6:  # dual stack: IPv4 clients reach it as ::ffff:127.0.0.1
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()

Listener((address, port), Server).serve_forever()
"""


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _serve(port: int, model_id: str, seen: Path, who: str, address: str = "127.0.0.1") -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", LISTENER, str(port), model_id, str(seen), who, address])
    while not _listening(port):
        assert process.poll() is None, "the server did not start"
        time.sleep(0.05)
    return process


@pytest.mark.skipif(os.geteuid() != 0, reason="plays another local user with setuid")
@pytest.mark.parametrize("how", ["our server died", "stale record of a reused pid", "our server died mid-run"])
def test_a_later_run_never_sends_the_document_to_another_users_listener(monkeypatch, how):
    from rlm.models import local_server

    work = Path(tempfile.mkdtemp(prefix="rlm-round18-"))
    work.chmod(0o777)  # the other user's process writes what it received here
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    monkeypatch.setenv("RLM_CACHE_DIR", str(work / "cache"))
    monkeypatch.setenv("RLM_LOCAL_PORT", str(port))
    monkeypatch.delenv("RLM_LOCAL_API_BASE", raising=False)
    monkeypatch.setattr(local_server, "_managed", None)
    model_id = local_server.SERVED_MODEL_ID
    server = local_server.LocalServer(port=port)
    server.record_path.parent.mkdir(parents=True, exist_ok=True)
    built = None
    if how.startswith("our server died"):
        # This user's server (a stand-in answering as the bundled model), with the record a started one leaves.
        ours = _serve(port, model_id, work / "ours.jsonl", "this-user")
        server.record_path.write_text(json.dumps({"guard_pid": ours.pid, "port": port, "model": model_id}))
        attached = RLM(model="local", max_iterations=2)  # attaches: the listener is this user's
        if how.endswith("mid-run"):
            built = attached  # its requests are sent after the port changed hands
        ours.kill()  # it dies (the OOM killer, a crash); another user's process takes the port first
        ours.wait()
    else:
        # A guard killed with SIGKILL left its record; its pid now belongs to another process of this
        # user (here, this one). It attached with nothing listening; now the record is not trusted
        # (that pid runs no guard), so a server of its own would be started (stubbed here).
        server.record_path.write_text(json.dumps({"guard_pid": os.getpid(), "port": port, "model": model_id}))

        def would_start(self, wait_s):
            raise ConfigurationError("the test stands in for starting the real model server")

        monkeypatch.setattr(local_server.LocalServer, "_launch", would_start)
        with pytest.raises(ConfigurationError, match="stands in for starting"):
            RLM(model="local")
    squatter = _serve(port, model_id, work / "squatter.jsonl", "other-user")
    try:
        try:
            answer = (built or RLM(model="local", max_iterations=2)).run("Summarise.", "SECRET-DOCUMENT-7f3a").answer
        except Exception as exc:  # refused: what should happen
            answer = f"refused: {exc}"
        seen = (work / "squatter.jsonl").read_text() if (work / "squatter.jsonl").exists() else ""
    finally:
        squatter.kill()
        squatter.wait()
        local_server._managed = None
    assert "SECRET-DOCUMENT-7f3a" not in seen, "another user's process received the document"
    assert answer != "chosen by another user"


@pytest.mark.skipif(os.geteuid() != 0, reason="plays another local user with setuid")
@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6")
@pytest.mark.parametrize("address", ["0.0.0.0", "::", "::ffff:127.0.0.1"])
def test_another_users_listener_on_a_wildcard_or_ipv6_address_is_never_adopted(monkeypatch, tmp_path, address):
    from rlm.errors import ConfigurationError
    from rlm.models import local_server

    tmp_path.chmod(0o777)
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    monkeypatch.setenv("RLM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("RLM_LOCAL_PORT", str(port))
    monkeypatch.delenv("RLM_LOCAL_API_BASE", raising=False)
    monkeypatch.setattr(local_server, "_managed", None)

    def never_launch(self, wait_s):
        raise AssertionError("the test must not start the real model server")

    monkeypatch.setattr(local_server.LocalServer, "_launch", never_launch)
    squatter = _serve(port, local_server.SERVED_MODEL_ID, tmp_path / "seen.jsonl", "other-user", address)
    try:
        with pytest.raises(ConfigurationError, match="another user's program"):
            local_server.ensure_local_server()
    finally:
        squatter.kill()
        squatter.wait()
        local_server._managed = None
    assert not (tmp_path / "seen.jsonl").exists()  # no prompt went there
