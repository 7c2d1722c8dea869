"""Twenty-seventh attack round: this session's fixes with fresh eyes, at their causes: the exact counts of
a frame (host_memory `_unescaped`, `json_containers`, `json_values`, `counting_bytes`) and their callers
(channel.receive, the E2B reader's `held_bytes`), the jail's mmap rules, the batch runner's context
glob (`_read_glob`, `_glob_matches`) and summary, and `rlm view` of a transcript a stranger saved.

Probed: frames that parse yet hide or fake a quote (`\\u005c`, `\\u0022`, `\\/`, odd and even backslash
runs before quotes, upper-case hex, non-ASCII, whitespace between tokens; 250,000 random documents
of that kind) against what `json.loads` builds; what counting allocates past its charge (bytearray
frames with backslash runs and brackets in strings, non-ASCII ones); the counts' time on strings,
escapes and punctuation; the E2B SDK's objects for a result of many short strings against
`held_bytes`; with the policy off, shared memory by `/dev/zero` (read-write and read-only), `/dev/shm`,
`/dev/hugepages`, the int 0x80 ABI (SIGSYS), a readable file mapped shared; context globs with `..`,
a symlinked fixed part, thousands of `**`, a pattern whose last part matches folders; results files
whose rows hold objects, lists, 1 MB fields and infinities; `rlm view` of /save transcripts with
5,000-digit numbers, nesting 5,000 deep, terminal controls, wrong types, lone surrogates.

Held (kept below): the exact counts are at least what parsing builds on every escape form tried,
and counting allocates within its charge; Landlock keeps `/dev/zero` and `/dev/shm` out (MAP_SHARED of
`/dev/zero` is shared anonymous memory by another name) while a readable file still maps shared;
a context glob's `..` after the wildcard reads nothing outside its folder; `rlm view` of a transcript
full of terminal controls shows none raw.
Probed and not kept: `..` or a symlink in a glob's fixed part names a folder outright, as a
`context_path` may (round 26: an items file is not trusted configuration); `summary_table` prints a
foreign `error_class`/`finish_reason` whole on its line (a 1 MB field: a 1 MB line, output no larger
than the file); a 5,000-digit id or a row nested 100,000 deep in a results file is left out.

Five holes, found as strict xfails and closed the same session (reproductions, causes and fixes in
/tmp/s12/attack27/HOLES.md); what they were:
1. `held_bytes` counts a string at its characters alone: an E2B result of 600,000 three-letter
   strings (a 4 MB message) is ~40 MB of str objects in the SDK, counted at 2 MB: the step's 8 MB
   cap is never reached (1,000,000 of them: 68 MB held, 3 MB counted);
2. a context glob reads every file below any folder its last part matches: `corpus/*` reads (and
   holds, up to the batch's 10 GB) all of corpus's subfolders to keep its top-level files;
3. `_glob_matches` walks every run of `**` from each position in it: 4,000 `**` in a row cost seconds
   per file name (quadratic; 20,000 in a 60 KB pattern: over a minute a name);
4. `rlm view` of a .json holding an integer past Python's digit limit or lists nested 5,000 deep
   ends in a traceback (load_saved catches JSONDecodeError, not ValueError/RecursionError);
5. the exact counts take one Python step per string: a frame of `"[",` repeated is counted ~80 times
   slower than `json.loads` parses it (16 MB: 8.6 s of host CPU; 64 MB: ~35 s), past the step's
   deadline, which the count never looks at.
The fixes: `held_bytes` charges each string's object as `parsed_bytes` does; a context glob is read
through `gitignore.FileGlobs`, whose match of a folder does not take its contents, so a file is read
only when the whole pattern names it, and a run of `**` is collapsed to one; `load_saved` turns any
unreadable JSON into a usage error; the exact counts split each 64 KiB chunk at its quotes in C and
count the pieces outside strings, carrying whether the next chunk starts inside one (no Python step
per string: the 16 MB frame counts in ~0.2 s).
"""

from __future__ import annotations

import io
import json
import random
import sys
import time

import pytest

from rlm.cli.common import EXIT_USAGE
from rlm.sandbox.host_memory import json_containers, json_values
from tests.sandbox.conftest import attempt, needs_jail, traced_peak
from tests.sandbox.frame_account import channel_sending
from tests.sandbox.test_attacks_round26 import _allocated_past_the_count

_CALL = {"type": "call", "fn": "llm_query_batched"}


# --- 1. the exact counts ------------------------------------------------------------------------------------------
def _built(value: object) -> tuple[int, int]:
    """(objects and lists, values) parsing built: each value, and each key of an object."""
    containers = values = 0
    stack = [value]
    while stack:
        item = stack.pop()
        values += 1
        if isinstance(item, list):
            containers += 1
            stack.extend(item)
        elif isinstance(item, dict):
            containers += 1
            values += len(item)
            stack.extend(item.values())
    return containers, values


def _hostile_string(rng: random.Random) -> str:
    """A JSON string whose characters are escaped every way the parser accepts."""
    out = ['"']
    for char in rng.choices(["\\", '"', "[", "{", "]", ",", ":", "/", "a", "é", "😀", "\n", "u"], k=rng.randint(0, 8)):
        if char == '"':
            out.append(rng.choice(['\\"', "\\u0022"]))
        elif char == "\\":
            out.append(rng.choice(["\\\\", "\\u005c", "\\u005C"]))
        elif char == "/":
            out.append(rng.choice(["/", "\\/"]))
        elif char == "\n":
            out.append(rng.choice(["\\n", "\\u000a"]))
        elif rng.random() < 0.2 and ord(char) < 0x10000:
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    return "".join(out) + '"'


def _hostile_document(rng: random.Random, depth: int = 0) -> str:
    space = rng.choice(["", " ", "\n\t\r "])
    roll = rng.random()
    if depth > 4 or roll < 0.3:
        return _hostile_string(rng)
    if roll < 0.4:
        return rng.choice(["1", "-0.5e3", "null", "true", "NaN", "-Infinity"])
    if roll < 0.7:
        items = (space + "," + space).join(_hostile_document(rng, depth + 1) for _ in range(rng.randint(0, 4)))
        return "[" + space + items + space + "]"
    entries = ",".join(
        _hostile_string(rng) + space + ":" + space + _hostile_document(rng, depth + 1) for _ in range(rng.randint(0, 4))
    )
    return "{" + space + entries + "}"


def test_the_exact_counts_are_at_least_what_parsing_builds_on_every_escape_form():
    rng = random.Random(27)
    for _ in range(20_000):
        text = _hostile_document(rng)
        containers, values = _built(json.loads(text))
        assert json_containers(bytearray(text.encode())) >= containers, text
        assert json_values(text) >= values, text


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param(
            json.dumps({**_CALL, "args": [['\\"[' * 400_000, "[" * 700_000]]}).encode(), id="escaped quotes, brackets"
        ),
        pytest.param(
            json.dumps({**_CALL, "args": [['é\\"[{' * 300_000, "😀,:" * 200_000]]}, ensure_ascii=False).encode(),
            id="non-ASCII, escapes, brackets",
        ),
        pytest.param(
            (
                json.dumps(_CALL)[:-1] + ', "args": [["' + "\\u005c\\u0022[" * 100_000 + '"' + ', "["' * 100_000 + "]]}"
            ).encode(),
            id="unicode escapes of backslash and quote",
        ),
    ],
)
def test_counting_a_frame_allocates_within_its_charge(frame):
    assert _allocated_past_the_count(frame) <= 1 << 20


def test_counting_a_frame_of_many_short_strings_costs_about_what_parsing_it_does():
    # 8 MB, 2,000,000 brackets in strings
    frame = (json.dumps(_CALL)[:-1] + ', "args": [[' + '"[",' * 2_000_000 + '""]]}').encode()
    started = time.process_time()
    json.loads(frame)
    parse = time.process_time() - started
    with channel_sending(frame) as receiver:
        started = time.process_time()
        receiver.receive(time.monotonic() + 60)
        spent = time.process_time() - started
    assert spent < max(1.0, 20 * parse), f"counted in {spent:.1f} s of CPU; json.loads took {parse:.2f} s"


def test_an_e2b_result_of_many_short_strings_counts_at_what_the_sdk_holds():
    from e2b_code_interpreter.models import Execution, parse_output

    from rlm.sandbox.e2b.bridge import MAX_STEP_OUTPUT_BYTES, OutputReader

    strings = [f"a{i % 10}" for i in range(600_000)]  # a 3.6 MB message
    message = json.dumps({"type": "result", "is_main_result": False, "json": {"v": strings}})
    reader = OutputReader(lambda call, held: None)
    held, _ = traced_peak(lambda: parse_output(Execution(), message, on_result=reader.on_result))
    assert held > 3 * MAX_STEP_OUTPUT_BYTES  # what the SDK holds for it: three times the step's cap
    assert reader.too_much, "the step went on"


# --- 2. shared memory by another name (policy off) ------------------------------------------------------------------
@needs_jail
@pytest.mark.parametrize(
    "action",
    [
        "import mmap\nfd = os.open('/dev/zero', os.O_RDWR)\nresult = mmap.mmap(fd, 4096, mmap.MAP_SHARED)",
        "fd = os.open('/dev/shm/round27', os.O_RDWR | os.O_CREAT)\nresult = fd",
        "result = os.listdir('/dev/hugepages')",
    ],
    ids=["/dev/zero mapped shared", "/dev/shm", "/dev/hugepages"],
)
def test_shared_memory_by_another_name_is_refused(unrestricted, action):
    assert attempt(unrestricted, action).startswith("DENIED")


@needs_jail
def test_a_readable_file_still_maps_shared(unrestricted, readable_file):
    action = (
        f"import mmap\nfd = os.open({str(readable_file)!r}, os.O_RDONLY)\n"
        "result = mmap.mmap(fd, 0, mmap.MAP_SHARED, mmap.PROT_READ)[:9]"
    )
    assert attempt(unrestricted, action) == "OK: b'host file'\n"


# --- 3. the context glob ------------------------------------------------------------------------------------------
def _tree(tmp_path):
    (tmp_path / "ctx" / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / "ctx" / "top.txt").write_text("top")
    (tmp_path / "ctx" / "sub" / "deeper" / "deep.txt").write_text("deep")
    (tmp_path / "secret.txt").write_text("secret")
    return tmp_path / "ctx"


def test_a_context_globs_dot_dot_after_the_wildcard_reads_nothing_outside(tmp_path):
    from rlm.batch.items import _read_glob
    from rlm.errors import ContextError

    root = _tree(tmp_path)
    with pytest.raises(ContextError):
        _read_glob(f"{root}/*/../../secret.txt")


def test_a_context_glob_reads_only_the_files_it_matches(tmp_path, monkeypatch):
    import rlm.context_folder as folder
    from rlm.batch.items import _read_glob

    root = _tree(tmp_path)
    read: list[str] = []
    real = folder.read_file

    def spy(name, *args, **kwargs):
        read.append(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(folder, "read_file", spy)
    assert list(_read_glob(f"{root}/*")) == [str(root / "top.txt")]
    assert read == ["top.txt"], f"read {read} for one match"


def test_a_context_glob_of_thousands_of_globstars_is_matched_quickly(tmp_path):
    from rlm.batch.items import _read_glob

    root = _tree(tmp_path)
    started = time.process_time()
    found = _read_glob(f"{root}/" + "**/" * 4_000 + "deep.txt")
    spent = time.process_time() - started
    assert list(found) == [str(root / "sub" / "deeper" / "deep.txt")]
    assert spent < 0.5, f"{spent:.1f} s of CPU to match three file names"


# --- 4. rlm view of a stranger's transcript ---------------------------------------------------------------------------
def _view(path, monkeypatch) -> tuple[int, str, str]:
    from rlm.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    code = main(["view", str(path), "--detailed"])
    return code, out.getvalue(), err.getvalue()


def test_rlm_view_of_a_transcript_full_of_terminal_controls_shows_none_raw(tmp_path, monkeypatch):
    controls = "\x1b[2J\x1b]0;owned\x07\x9b31m\u202e\x00"
    record = {"question": controls, "answer": controls, "finish_reason": controls, "cost": "nan",
              "trajectory": [{"iteration": controls, "code": controls, "output": controls}]}  # fmt: skip
    path = tmp_path / "chat.json"
    path.write_text(json.dumps([record]))
    code, out, err = _view(path, monkeypatch)
    assert code in (0, EXIT_USAGE)
    for shown in (out, err):
        assert not any(char in shown for char in "\x1b\x07\x9b\u202e\x00"), shown


@pytest.mark.parametrize(
    "text",
    [
        '[{"question": "q", "finish_reason": "x", "cost": 1' + "0" * 5000 + "}]",
        '[{"question": "q", "finish_reason": "x", "answer": ' + "[" * 5000 + "]" * 5000 + "}]",
    ],
    ids=["5000-digit cost", "answer nested 5000 deep"],
)
def test_rlm_view_of_a_foreign_transcript_is_a_usage_error_not_a_traceback(tmp_path, monkeypatch, text):
    path = tmp_path / "chat.json"
    path.write_text(text)
    code, _, err = _view(path, monkeypatch)
    assert "Traceback" not in err, err[-300:]
    assert code == EXIT_USAGE
