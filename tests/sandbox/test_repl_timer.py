"""The step timer's signal handler cuts only the model's code, never the worker's own clean-up.

The attack rounds reach this rule through timed races (a swallowed TimeoutError timed to land in
the clean-up); this test pins the rule itself, deterministically, by calling the handler the way
the kernel's signal would. The worker's modules import each other as top-level names (they run
from their own folder in the worker), so the check runs in a child interpreter set up the same way.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import rlm.sandbox.local

WORKER_DIR = Path(rlm.sandbox.local.__file__).parent

CHECK = """
import signal, sys
sys.path.insert(0, sys.argv[1])
import repl

repl._Cutting.live, repl._Cutting.expired = False, False
repl.on_step_timeout(signal.SIGALRM, None)  # lands in the worker's clean-up: must not raise
print("outside:", repl._Cutting.expired)

repl._Cutting.live = True
try:
    repl.on_step_timeout(signal.SIGALRM, None)
except TimeoutError as exc:
    print("inside:", repl._Cutting.expired, exc)
"""


def test_the_timer_signal_cuts_only_the_models_code_and_marks_the_step_expired():
    done = subprocess.run(
        [sys.executable, "-I", "-c", CHECK, str(WORKER_DIR)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "outside: False",
        "inside: True the step used up its time limit and was stopped",
    ]
