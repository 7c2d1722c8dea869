"""The engines `bench.client_path` drives against one scripted server: ours and its two peers.

Each engine is a child interpreter given the same workload (see `client_path`): ours (`RLM`, on
DSPy's native client or on LiteLLM), the paper authors' `rlms` (its own virtualenv: it installs
the import name `rlm` too) and DSPy's `dspy.RLM` (with DSPy's `LocalInterpreter`; its default
Deno interpreter is a download these machines cannot make). A root request carries the run's
id (`RUN:<engine>:<hex>`) in its query; the server answers it in the engine's own reply format.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ENGINES = ("native", "litellm", "rlms", "dspy")
SUBCALLS = 64
RLMS_PYTHON_DEFAULT = "/tmp/rlms-venv/bin/python"

# Run by every child after its engine's head: `run(query, concurrency)` does one whole completion
# on context "ctx"; `DEFAULT_CONCURRENCY` is what the engine uses for a batch when not told.
_TAIL = """
import json, sys, time, uuid
def query(task):
    rid = f"RUN:{ENGINE}:{uuid.uuid4().hex[:10]}"
    return rid, f"{rid} {task}"
if WHAT == "first":
    run(query("BATCH 0")[1])
    print(json.dumps({}))
    sys.exit()
run(query("BATCH 4")[1])  # warm-up: imports, connection pools, the sandbox
if WHAT == "cpu":
    c0 = time.process_time(); run(query("BATCH 0")[1]); c1 = time.process_time()
    run(query("BATCH %(n)d")[1]); c2 = time.process_time()
    print(json.dumps({"cpu_ms": ((c2 - c1) - (c1 - c0)) / %(n)d * 1000}))
elif WHAT == "steps":
    rid, q = query("STEPS")
    w0 = time.time(); run(q); w1 = time.time()
    print(json.dumps({"run": rid, "w0": w0, "w1": w1}))
else:
    rid, q = query("BATCH %(n)d slow")
    run(q, None if WHAT == "default" else %(n)d)
    print(json.dumps({"run": rid, "concurrency": DEFAULT_CONCURRENCY}))
"""

_OURS = """
import sys
from rlm import RLM
BASE, WHAT, ENGINE = sys.argv[1:4]
extra = {"engine": "litellm"} if ENGINE == "litellm" else {}
DEFAULT_CONCURRENCY = RLM(model="openai/bench", api_base=BASE).config.max_concurrency
def run(q, concurrency=None):
    kw = {} if concurrency is None else {"max_concurrency": concurrency}
    return RLM(model="openai/bench", api_base=BASE, max_iterations=30, **extra, **kw).completion(q, "ctx")
"""

_RLMS = """
import inspect, sys
from rlm import RLM
from rlm.core.lm_handler import LMHandler
BASE, WHAT, ENGINE = sys.argv[1:4]
DEFAULT_CONCURRENCY = inspect.signature(LMHandler.__init__).parameters["batch_max_concurrent"].default
_init = LMHandler.__init__
def run(q, concurrency=None):
    if concurrency is not None:  # rlms has no setting for it: the batch's semaphore is the handler's
        def init(self, *a, **k):
            _init(self, *a, **k)
            self.batch_max_concurrent = concurrency
        LMHandler.__init__ = init
    backend = {"model_name": "bench-rlms", "base_url": BASE, "api_key": "sk-bench"}
    r = RLM(backend="openai", backend_kwargs=backend, environment="local", max_iterations=30)
    return r.completion("ctx", root_prompt=q).response
"""

_DSPY = """
import functools, inspect, sys
import dspy
from dspy.primitives.local_interpreter import LocalInterpreter
BASE, WHAT, ENGINE = sys.argv[1:4]
dspy.configure(lm=dspy.LM("openai/bench-dspy", api_base=BASE, api_key="sk-bench", cache=False))
_tools = dspy.RLM._make_llm_tools
DEFAULT_CONCURRENCY = inspect.signature(_tools).parameters["max_workers"].default
def run(q, concurrency=None):
    if concurrency is not None:  # dspy.RLM has no setting for it: the batch pool's size is fixed
        dspy.RLM._make_llm_tools = functools.partialmethod(_tools, max_workers=concurrency)
    rlm = dspy.RLM("context, query -> answer", max_iters=30, max_llm_calls=200, interpreter_factory=LocalInterpreter)
    return rlm(context="ctx", query=q).answer
"""


def child_command(engine: str, base_url: str, what: str) -> list[str]:
    """The command line of one child: the engine's interpreter and its script."""
    head = {"native": _OURS, "litellm": _OURS, "rlms": _RLMS, "dspy": _DSPY}[engine]
    script = head + _TAIL.replace("%(n)d", str(SUBCALLS))
    python = rlms_python() if engine == "rlms" else sys.executable
    return [python, "-c", script, base_url, what, engine]


def rlms_python() -> str:
    python = os.environ.get("RLMS_PYTHON", RLMS_PYTHON_DEFAULT)
    if not Path(python).exists():
        raise SystemExit(
            f"no interpreter for rlms at {python}: python3 -m venv /tmp/rlms-venv && "
            "/tmp/rlms-venv/bin/pip install rlms==0.1.3 (or set RLMS_PYTHON), or leave rlms out of --engines"
        )
    return python


def fenced(engine: str, code: str) -> str:
    """A model reply holding `code`, in the format `engine` parses."""
    if engine == "rlms":
        return f"```repl\n{code}\n```"
    if engine == "dspy":  # ChatAdapter's fields for dspy.RLM's action signature
        return f"[[ ## reasoning ## ]]\nNext.\n\n[[ ## code ## ]]\n```python\n{code}\n```\n\n[[ ## completed ## ]]"
    return f"```python\n{code}\n```"


def finish(engine: str, answer: str) -> str:
    """Code that ends the run with `answer`, in the engine's own way."""
    if engine == "rlms":
        return f'answer["content"] = {answer!r}\nanswer["ready"] = True'
    if engine == "dspy":
        return f"SUBMIT({answer!r})"
    return f"FINAL({answer!r})"
