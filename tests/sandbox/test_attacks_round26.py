"""Twenty-sixth attack round: with fresh eyes, the host code that handles what runs and users produce:
the hints that parse a failing line an error quotes (engine/hints.py), the channel's exact count of a
frame's objects and lists (host_memory.json_containers) and its value count, the E2B output reader's
count of results and errors (e2b/bridge.py held_bytes, OutputReader.on_result/on_error), the batch
runner (items files, the results store and its resume, the summary), `rlm ask --json/--output`, and a
quick regression of the split folder reader.

Probed: hint lines up to the 400 characters the hint reads (nested brackets, unary and lambda
chains, f-strings, walrus, decorators and block headers, NUL, non-ASCII, 390-digit and infinite
literals) for exceptions and time; frames whose strings hold escaped quotes, backslash runs,
`\\u0022`, or no closing quote, against what `json.loads` builds; the exact counts on backslash runs;
the memory `json_containers` and `parsed_bytes` allocate while counting; the SDK objects an E2B display
result or error becomes (Result, its Chart, ExecutionError) against `held_bytes`; items files with a
5,000-digit id, nesting 100,000 deep, bytes that are not UTF-8, a BOM, NUL and lone surrogates in
ids and queries, NaN settings, a 50 MB line; a results file whose rows a stranger edited, then
`rlm batch` resumed over it; answers with C0/C1/bidi controls, lone surrogates, infinities, 4,001- and
5,000-digit integers and 5,000-deep lists through `rlm ask --json` and `--output int|float|list|dict`;
a Parquet items file whose context column holds bytes.

Held (kept below): frames with escaped quotes, backslash runs and unterminated strings are counted at
least at what parsing builds; the exact counts stay linear on backslash runs; the hints take any
hostile quoted line in well under a second, without raising; `rlm ask --json` of an answer full of
terminal controls prints valid JSON with none raw; a context folder's symlink out is still left out;
a plain 3 MB string and 1 MB of emoji are read within their count (the control for hole 1);
an E2B chart result counts at what the SDK holds (found here, closed while this round ran: 2710b27).
Probed and not kept: everything else above held too (items with NUL, surrogates, NaN and huge lines
are read, or refused on the item; typed answers past the digit limit or nested 5,000 deep are "no
answer fitted"); the HTML graph view sets foreign node fields through textContent/setAttribute only; a
session's variable listing as round 25 left it; an E2B stdout message whose text is not a string
(str() of a list nested past the recursion limit would raise out of run_code) needs a hostile service,
not hostile code; a FIFO or device named outright as a context is refused; `rlm chat`'s `/save` of a
name holding a NUL (piped stdin) ends the chat in a ValueError traceback (the user's own input).
Not a hole but worth a line in SECURITY: an items file names its contexts by any
path (`"context_path": "~/.aws/credentials"`, absolute paths, `..`, globs), so an items file from
someone else (a shared benchmark) can put any file the user can read into an item's context, and its
own query can ask for it verbatim into results.jsonl; nothing says an items file is trusted
configuration.

Seven holes, found as strict xfails and closed the same session (reproductions, causes and suggested
fixes in /tmp/s12/attack26/HOLES.md); what they were:
1. (policy ON) counting a frame allocates many times the frame, uncounted: `json_containers` and
   `json_values` cut the strings out with `re.sub`, which keeps an object and a list slot for every
   piece between two strings; `llm_query_batched(['[' * 1_000_001] + [''] * 4_000_000)` (a 17 MB
   frame) raised the host's RSS by ~880 MB under a 256 MB account before the frame was refused, a
   45 MB one by 2.4 GB under a default run's 128 MB (a 5 MB frame: 214 MB to count its containers;
   a 4 MB list of empty strings: 70 MB to count values);
   and the JSON-string regex itself (its repeated group is not possessive) keeps ~185 bytes of
   the regex engine's backtracking stack for every escape in one string: an honest
   `recursive_llm("summarise", csv_slice)` of a 16 MB CSV slice raised the host's peak RSS by 692 MB
   (a 48 MB slice: 2 GB; ru_maxrss: the engine holds the GIL) while the frame counted at twice its bytes,
   and a JSON document handed to a child as text (what 0247665 was for) 361 MB past a 10 MB frame's count;
2. `held_bytes` (E2B, as 2710b27 left it) puts the id of every value it walks, floats included, in a
   set: counting a display result of 2 million floats allocated 150 MB beside the SDK's 65 MB;
3. an items file with an integer past Python's digit limit, nesting past the recursion limit, or bytes
   that are not UTF-8 raises ValueError / RecursionError / UnicodeDecodeError out of `rlm.batch`
   (`rlm batch` ends in a traceback);
4. an inline context the items reader accepted ends the whole batch before any item runs:
   `ContextSpec.key` json.dumps it outside any per-item handling (a Parquet list<binary> context:
   TypeError; a JSONL context nested ~980 deep, read from a shallower stack: RecursionError);
5. a results file row of the wrong types (`"llm_calls": "5"`), edited in before a resume, ends
   `rlm batch` in a traceback at its summary, after the batch ran (`rlm view` of the same file says
   "not a results file written by rlm batch");
6. an item's `meta` nested ~990 deep (read from a shallower stack) ends the batch after the item ran:
   the results row's json.dumps raises RecursionError, and `_json_line`'s fallback `str(field)` raises
   it again (the LM calls are spent, the row is never written, later items never run);
7. a batch item's `context_glob` (the README's `"src/**/*.py"`) is matched with `glob.glob`, which
   follows symlinks, and its matches are read as files named outright: a cloned repository's
   `src/evil.py -> ~/.aws/credentials` is read into the context (what round 21 closed for folders),
   and two symlinks to their own folder (`a -> .`, `b -> .`) make the walk endless (2**depth paths;
   `rlm batch --item-timeout 5` was still running at 40 s: a context's load is not under the timeout).
The fixes. Holes 1-2 (src/rlm/sandbox): the string pattern has no repeated group (escapes are
removed first: escaped backslashes in pairs, then escaped quotes, so each quote left delimits a
string), the strings are walked with `finditer` and the punctuation inside them taken off the total
(no piece kept per string), the copies without escapes are charged to the run's account before any
exact count, on the local channel and in the E2B reader; `held_bytes` remembers containers only.
Holes 3-7 closed in src/rlm/batch: an items file is read as bytes, each line decoded and parsed inside
one try (a ConfigurationError naming the line); `ContextSpec.key` never raises (a context json.dumps
cannot write is keyed by its object); `summary_table` reads every number through `_number`;
`_json_line` writes each field it can and a "<not writable: ...>" note for the rest; a
`context_glob` is read by the folder reader (its fixed folder walked by descriptors, no symlink
followed, the pattern picking the names), so the walk ends (the load stays outside `--item-timeout`:
a shared context is loaded once, and a file read cannot be interrupted).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import tracemalloc

import pytest

from rlm.engine.hints import error_hint, no_match_hint, not_indexable_hint
from rlm.errors import ConfigurationError
from rlm.sandbox.e2b.bridge import MAX_STEP_OUTPUT_BYTES, OutputReader
from rlm.sandbox.host_memory import HostFrameBudget, json_containers, json_values
from rlm.sandbox.local import channel
from rlm.testing import FakeOpenAIServer
from tests.sandbox.conftest import code, finishes_within, needs_jail, traced_peak
from tests.sandbox.frame_account import channel_sending


# --- 1. counting a frame: what the count itself allocates ----------------------------------------------------------
def _containers_built(value: object) -> int:
    stack, count = [value], 0
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            count += 1
            stack.extend(item.values())
        elif isinstance(item, list):
            count += 1
            stack.extend(item)
    return count


class _WatchedBudget(HostFrameBudget):
    """A run's account that checks, at each change of a frame's count, that what the host allocated
    since the last change (tracemalloc's peak) stayed within what was counted until then."""

    def __init__(self, baseline: int) -> None:
        super().__init__(1 << 40)
        self.baseline, self.worst = baseline, 0

    def exchange(self, held: int, size: int) -> bool:
        self.worst = max(self.worst, tracemalloc.get_traced_memory()[1] - self.baseline - self.held_bytes)
        taken = super().exchange(held, size)
        tracemalloc.reset_peak()
        return taken


def _allocated_past_the_count(frame: bytes) -> int:
    """The most the host allocated beyond the frame's count while `channel.receive` read it."""
    tracemalloc.start()
    try:
        budget = _WatchedBudget(tracemalloc.get_traced_memory()[0])
        with channel_sending(frame, budget) as receiver:
            message = receiver.receive(time.monotonic() + 60)
            budget.exchange(0, budget.held_bytes)  # the last stretch: parsing and its repair
        del message
    finally:
        tracemalloc.stop()
    return budget.worst


_CALL = {"type": "call", "fn": "llm_query_batched"}


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param(json.dumps({**_CALL, "args": [["x" * 3_000_000]]}).encode(), id="a plain 3 MB string"),
        pytest.param(
            json.dumps({**_CALL, "args": [["😀" * 250_000]]}, ensure_ascii=False).encode(), id="1 MB of emoji"
        ),
        pytest.param(
            json.dumps({**_CALL, "fn": "recursive_llm", "args": ["summarise", "a,b\n" * 500_000]}).encode(),
            id="an honest 2.5 MB CSV slice",
        ),
        pytest.param(
            json.dumps(
                {
                    **_CALL,
                    "fn": "recursive_llm",
                    "args": ["q", json.dumps([{"id": i, "tags": ["a"]} for i in range(60_000)])],
                }
            ).encode(),
            id="an honest JSON document handed to a child",
        ),
        pytest.param(
            json.dumps({**_CALL, "args": [["ab"] * 300_000]}).encode(),
            id="300,000 short strings",
        ),
        pytest.param(
            json.dumps({**_CALL, "args": [["[" * 1_000_001] + [""] * 500_000]}).encode(),
            id="1,000,001 brackets in a string and 500,000 empty strings",
        ),
    ],
)
def test_the_host_allocates_no_more_than_a_frames_count_while_reading_it(frame):
    over = _allocated_past_the_count(frame)
    assert over <= 1 << 20, f"{over / 1e6:.0f} MB allocated past the count of a {len(frame) / 1e6:.1f} MB frame"


@needs_jail
def test_the_models_code_cannot_make_the_host_count_its_frame_at_many_times_its_size(restricted, monkeypatch):
    # Policy ON: the frame is what the worker's encoder makes of an ordinary call's arguments.
    seen: list[tuple[int, int]] = []
    counted = channel.json_containers

    def measured(frame):
        peak, containers = traced_peak(lambda: counted(frame))
        seen.append((len(frame), peak))
        return containers

    monkeypatch.setattr(channel, "json_containers", measured)
    result = restricted.execute(
        "r = llm_query_batched(['[' * 1_000_001] + [''] * 500_000)\nprint(len(r))",
        lambda fn, args, kwargs: ["ok"] * len(args[0]),
    )
    assert seen, (result.output, result.error)  # the frame reached the exact count
    size, peak = seen[0]
    assert peak <= 2 * size, f"{peak / 1e6:.0f} MB allocated to count a {size / 1e6:.0f} MB frame"


@pytest.mark.parametrize(
    "frame",
    [
        rb'{"a": "\"[[[[\"", "b": [1]}',  # escaped quotes around brackets
        rb'{"a": "\\\\\\", "b": [[{}]]}',  # a backslash run before the closing quote
        rb'{"a": "\\\"[{[{", "b": []}',  # an escaped backslash, then an escaped quote
        rb'{"a": "\u0022[[", "b": [[]]}',  # an escaped quote as \u0022
        rb'[[[{"a": "[[[[',  # a string that never ends: what parsing builds before it fails
        b'[[["\\',
    ],
)
def test_a_frames_exact_count_is_at_least_what_parsing_builds(frame):
    try:
        built = _containers_built(json.loads(frame))
    except ValueError:
        built = frame.split(b'"')[0].count(b"[") + frame.split(b'"')[0].count(b"{")  # built before the error
    assert json_containers(bytearray(frame)) >= built


def test_the_exact_counts_are_linear_on_backslash_runs():
    frame = b'"' + b"\\" * 4_000_001  # odd: the last backslash has no character to escape
    started = time.perf_counter()
    assert json_containers(bytearray(frame)) == 0
    assert json_values(frame.decode()) == 1
    assert time.perf_counter() - started < 2.0


# --- 2. E2B: a display result's chart -------------------------------------------------------------------------------
def test_an_e2b_chart_result_counts_at_what_the_sdk_holds():
    # found in this round and closed while it ran (2710b27: held_bytes walks objects' attributes)
    from e2b_code_interpreter.models import Execution, parse_output

    points = [[0, 0]] * 200_000  # a 1.6 MB message: ~32 MB of lists, tuples and PointData on the host
    chart = {"type": "line", "title": "t", "x_label": None, "y_label": None, "x_unit": None, "y_unit": None,
             "x_ticks": [], "x_tick_labels": [], "y_ticks": [], "y_tick_labels": [],
             "elements": [{"label": "a", "points": points}]}  # fmt: skip
    message = json.dumps({"type": "result", "is_main_result": False, "chart": chart})
    reader = OutputReader(lambda call, held: None)
    held, _ = traced_peak(lambda: parse_output(Execution(), message, on_result=reader.on_result))
    assert held > MAX_STEP_OUTPUT_BYTES  # what the SDK holds for the step: past the step's cap
    assert reader.too_much, "the step went on"


def test_counting_an_e2b_result_allocates_well_under_what_the_sdk_holds():
    from e2b_code_interpreter.models import Execution, parse_output

    from rlm.sandbox.e2b.bridge import held_bytes

    message = json.dumps({"type": "result", "is_main_result": False, "json": {"v": [0.5] * 500_000}})
    results: list = []
    sdk, _ = traced_peak(lambda: parse_output(Execution(), message, on_result=results.append))
    walk, counted = traced_peak(lambda: held_bytes(results[0].__dict__))
    assert counted > MAX_STEP_OUTPUT_BYTES  # the step is stopped: but counting it must not cost more again
    assert walk <= sdk / 2, f"counting took {walk / 1e6:.0f} MB beside the SDK's {sdk / 1e6:.0f} MB"


# --- 3. hostile items files -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "line",
    [
        b'{"id": 1' + b"0" * 5000 + b', "query": "q", "context": "c"}\n',
        b'{"id": "a", "query": "q", "context": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n",
        b'{"id": "a", "query": "q\xff", "context": "c"}\n',
    ],
    ids=["5000-digit id", "nested 100,000 deep", "not UTF-8"],
)
def test_an_items_file_that_cannot_be_read_is_a_configuration_error(tmp_path, line):
    from rlm.batch.items import read_items

    items = tmp_path / "items.jsonl"
    items.write_bytes(line)
    with pytest.raises(ConfigurationError):
        read_items(items)


# Run in a fresh interpreter: `rlm batch` reads its items from a shallow stack, and under pytest the
# parser's reach (the recursion limit less the frames below) is too short to leave the window open.
_DEEP_INLINE_BATCH = """
import sys, rlm
from rlm.testing import FakeOpenAIServer
server = FakeOpenAIServer(lambda body: "```python\\nFINAL('x')\\n```").start()
accepted = 0
for depth in range(1000, 800, -2):  # from past the parser's reach down to the deepest it reads
    items = sys.argv[1] + f"/items-{depth}.jsonl"
    open(items, "w").write('{"id": "a", "query": "q", "context": ' + "[" * depth + "]" * depth + "}\\n")
    try:
        run = rlm.batch(items, model="openai/test-model", api_base=server.base_url, api_key="test",
                        sandbox="restricted")
    except (RecursionError, rlm.ConfigurationError):
        continue  # not read (hole 3 when RecursionError): the items the reader accepts are the point
    accepted += 1
    try:
        assert len(list(run)) == 1
    except RecursionError as exc:
        print(f"ENDED: an inline context {depth} deep, read as an item, ended the batch: {exc}")
        break
    if accepted == 4:
        break
server.stop()
print("accepted", accepted)
"""


@needs_jail
def test_an_inline_context_the_reader_accepts_never_ends_the_batch(tmp_path):
    done = subprocess.run([sys.executable, "-c", _DEEP_INLINE_BATCH, str(tmp_path)], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "ENDED" not in done.stdout, done.stdout
    assert "accepted" in done.stdout


_DEEP_META_BATCH = """
import os, sys, rlm
from rlm.testing import FakeOpenAIServer
server = FakeOpenAIServer(lambda body: "```python\\nFINAL('x')\\n```").start()
for depth in range(1000, 800, -2):  # the deepest meta the reader accepts
    items = sys.argv[1] + f"/items-{depth}.jsonl"
    open(items, "w").write('{"id": "a", "query": "q", "context": "c", "meta": ' + "[" * depth + "]" * depth + "}\\n")
    try:
        run = rlm.batch(items, out=items + ".out", model="openai/test-model", api_base=server.base_url,
                        api_key="test", sandbox="restricted")
    except (RecursionError, rlm.ConfigurationError):
        continue
    try:
        print("results", len(list(run)))
    except RecursionError as exc:
        print(f"ENDED: a meta {depth} deep, read as an item, ended the batch after the item ran: {exc}")
    break
server.stop()
"""


@needs_jail
def test_an_items_meta_the_reader_accepts_never_ends_the_batch(tmp_path):
    done = subprocess.run([sys.executable, "-c", _DEEP_META_BATCH, str(tmp_path)], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "ENDED" not in done.stdout and "results 1" in done.stdout, done.stdout


def test_a_parquet_items_file_of_binary_contexts_never_ends_the_batch(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    import rlm

    items = tmp_path / "items.parquet"
    pq.write_table(pa.table({"id": ["a"], "query": ["q"], "context": [[b"\x00\x01"]]}), items)
    run = rlm.batch(items, model="openai/test-model", api_base="http://127.0.0.1:9", api_key="test")
    try:
        results = list(run)
    except TypeError as exc:
        pytest.fail(f"one item's context ended the batch: {exc}")
    assert len(results) == 1 and results[0].error_class is not None  # recorded on the item


# --- 4b. a batch item's context_glob over a folder someone else made -------------------------------------------------
def test_a_context_glob_never_reads_through_a_symlink_out_of_its_folder(tmp_path):
    from rlm.batch.items import read_items

    secret = tmp_path / "credentials"
    secret.write_text("aws_secret_access_key = abc123\n")
    repo = tmp_path / "repo"
    (repo / "src").mkdir(parents=True)
    (repo / "src" / "ok.py").write_text("print(1)\n")
    (repo / "src" / "evil.py").symlink_to(secret)  # a cloned repository may hold any symlink
    items = repo / "items.jsonl"  # the README's own example of a glob item
    items.write_text(
        json.dumps({"id": "q3", "query": "Which files define a retry policy?", "context_glob": "src/**/*.py"})
    )
    context = read_items(items)[0].context.load()
    assert "abc123" not in json.dumps(context)


_GLOB_LOOP = """
import json, os
from rlm.batch.items import read_items
from rlm.errors import ContextError
folder = FOLDER
os.makedirs(folder + "/data")
open(folder + "/data/x.txt", "w").write("hi")
os.symlink(".", folder + "/data/a")  # two links to their own folder: 2**depth paths
os.symlink(".", folder + "/data/b")
open(folder + "/items.jsonl", "w").write(json.dumps({"id": "q", "query": "q", "context_glob": "data/**/*.txt"}))
try:
    read_items(folder + "/items.jsonl")[0].context.load()
except ContextError:
    pass
"""


def test_a_context_glob_over_symlinks_to_their_own_folder_ends(tmp_path):
    assert finishes_within(_GLOB_LOOP.replace("FOLDER", repr(str(tmp_path))), 5.0)


# --- 4. a results file a stranger edited, then a resume -------------------------------------------------------------
@pytest.mark.parametrize("row", [{"llm_calls": "5"}, {"wall_time_s": "abc"}, {"llm_calls": 1, "cost": "1"}])
def test_rlm_batch_over_a_results_file_of_foreign_rows_never_ends_in_a_traceback(tmp_path, monkeypatch, capsys, row):
    from rlm.cli.main import main

    monkeypatch.setenv("OPENAI_API_KEY", "test")
    items, out = tmp_path / "items.jsonl", tmp_path / "results.jsonl"
    items.write_text(json.dumps({"id": "a", "query": "q", "context": "c"}) + "\n")
    out.write_text(json.dumps({"id": "a", "status": "ok", **row}) + "\n")  # item a is done: nothing runs
    status = main(["batch", str(items), "--out", str(out), "--model", "openai/test-model",
                   "--api-base", "http://127.0.0.1:9", "-q"])  # fmt: skip
    err = capsys.readouterr().err
    assert "Traceback" not in err and status != 1, err[-1500:]


# --- held: hints, rlm ask --json, the folder reader ------------------------------------------------------------------
@pytest.mark.parametrize(
    "line",
    [
        "(" * 160 + "x" + ")" * 160,
        "not " * 80,
        "lambda:" * 45,
        "map(x)" + "[0]" * 105,
        "map(" * 60 + "x" + ")[0]" * 60,
        "map(x)[0x" + "f" * 300 + "]",
        "map(x)[1e999]",
        "for x in map(y)[0]:",
        "f'{x!r:{y:{z}}}'[0] + map(q)[0]\x00",
    ],
)
def test_a_hostile_failing_line_gives_a_hint_or_none_quickly(line):
    started = time.perf_counter()
    for error in (
        f"TypeError: 'map' object is not subscriptable (at line 1: {line})",
        f"AttributeError: 'NoneType' object has no attribute 'group' (at line 1: {line})",
    ):
        hint = error_hint(error, [])
        assert hint is None or isinstance(hint, str)
        not_indexable_hint(error)
        no_match_hint(error)
    assert time.perf_counter() - started < 1.0


@needs_jail
def test_rlm_ask_json_of_an_answer_full_of_terminal_controls_is_valid_json_without_them(tmp_path, monkeypatch, capsys):
    from rlm.cli.main import main

    monkeypatch.setenv("OPENAI_API_KEY", "test")
    (tmp_path / "doc.txt").write_text("a short document\n")
    answer = r"FINAL('\x9b31m\u202egnp.exe\x1b]52;c;aGk=\x07\ud800\r')"
    server = FakeOpenAIServer(lambda body: code(answer)).start()
    try:
        status = main(["ask", "--model", "openai/test-model", "--api-base", server.base_url, "--sandbox", "restricted",
                       "--json", "-c", str(tmp_path / "doc.txt"), "--", "q"])  # fmt: skip
    finally:
        server.stop()
    out = capsys.readouterr().out
    assert status == 0
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\ud800-\udfff]", out)
    assert json.loads(out)["answer"] == "\x9b31m\u202egnp.exe\x1b]52;c;aGk=\x07?\r"


def test_a_context_folders_symlink_out_is_still_left_out(tmp_path):
    from rlm.context_files import load_context

    secret = tmp_path / "secret.txt"
    secret.write_text("the user's secret\n")
    folder = tmp_path / "repo"
    folder.mkdir()
    (folder / "notes.md").symlink_to(secret)
    (folder / "readme.md").write_text("hello\n")
    context, _ = load_context([str(folder)])
    assert "the user's secret" not in json.dumps(context)
    assert "hello" in json.dumps(context)
