"""The local restricted sandbox against DSPy's LocalInterpreter, in the same run.

Start-up (a fresh worker, and taking the warm spare of `sandbox/local/spare.py`), a trivial step's
round trip, loading a 100 MB context, a step after that load, and the peak memory of host plus
worker; the jailed sandbox and the policy-only one side by side, so the OS jail's own cost shows. Run:  python -m bench.sandbox_local
(DSPy's Deno/Pyodide PythonInterpreter is not measured: Deno cannot be installed on these machines.)
"""

from __future__ import annotations

import gc
import os
import resource
import statistics
import time
from collections.abc import Callable
from typing import Any

from rlm.sandbox.base import SandboxLimits
from rlm.sandbox.local import LocalSandbox

CONTEXT_MB = 100
SPARE_BOOT_S = 0.5  # between starts with a spare: time for the one started by the last start to boot


def no_calls(fn: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
    raise AssertionError("no host calls in this benchmark")


def median_ms(action: Callable[[], Any], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def peak_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))


def start_ms(jail: bool, spare: bool, repeat: int = 10) -> float:
    """Median time of `start()`: a fresh worker each time, or the spare (given time to boot)."""
    os.environ["RLM_SANDBOX_SPARE"] = "1" if spare else "0"
    samples = []
    for _ in range(repeat + 1):  # the first warms the OS caches (and, with spares, starts one)
        if spare:
            time.sleep(SPARE_BOOT_S)
        box = LocalSandbox(jail=jail)
        started = time.perf_counter()
        box.start()
        samples.append((time.perf_counter() - started) * 1000)
        box.close()
    return statistics.median(samples[1:])


def ours(context: str, jail: bool) -> dict[str, float]:
    row = {"start ms": start_ms(jail, spare=False), "start, spare ms": start_ms(jail, spare=True)}
    os.environ["RLM_SANDBOX_SPARE"] = "0"  # the figures below as before spares: each load a fresh start
    box = LocalSandbox(SandboxLimits(exec_timeout=30, memory_limit_mb=1024), jail=jail)
    box.start()
    box.load("small")
    row["trivial step ms"] = median_ms(lambda: box.execute("x = 1", no_calls), 200)
    # One context per worker: this load starts a fresh worker, and that start is counted here.
    started = time.perf_counter()
    box.load(context)
    row["load 100 MB s"] = time.perf_counter() - started
    row["step after load ms"] = median_ms(lambda: box.execute("n = len(context)", no_calls), 50)
    assert box.execute("len(context)", no_calls).output == f"{len(context)}\n"
    row["worker peak MB"] = peak_kib(box._process.pid) / 1024  # type: ignore[union-attr]
    box.close()
    return row


def dspy_local(context: str) -> dict[str, float]:
    from dspy.primitives.local_interpreter import LocalInterpreter

    def start_and_close() -> None:
        interpreter = LocalInterpreter()
        interpreter.start()
        interpreter.shutdown()

    start_and_close()
    row = {"start ms": median_ms(start_and_close, 10), "start, spare ms": float("nan")}
    interpreter = LocalInterpreter()
    interpreter.start()
    interpreter.execute("context = 'small'")
    row["trivial step ms"] = median_ms(lambda: interpreter.execute("x = 1"), 200)
    # dspy.RLM passes its inputs as variables with every step; the first such step is the load.
    started = time.perf_counter()
    interpreter.execute("n = len(context)", variables={"context": context})
    row["load 100 MB s"] = time.perf_counter() - started
    row["step after load ms"] = median_ms(
        lambda: interpreter.execute("n = len(context)", variables={"context": context}), 5
    )
    process = getattr(interpreter, "_process", None) or getattr(interpreter, "process", None)
    row["worker peak MB"] = peak_kib(process.pid) / 1024 if process is not None else float("nan")
    interpreter.shutdown()
    return row


def main() -> None:
    context = ("0123456789abcdef" * 64 + "\n") * (CONTEXT_MB * 1024 * 1024 // 1025)
    gc.collect()
    host_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows = {"recursive-llm restricted": ours(context, jail=True)}
    host_after_ours = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows["... restricted-policy-only"] = ours(context, jail=False)
    rows["dspy LocalInterpreter"] = dspy_local(context)
    columns = [
        "start ms",
        "start, spare ms",
        "trivial step ms",
        "load 100 MB s",
        "step after load ms",
        "worker peak MB",
    ]
    print(f"context: {len(context) / 1e6:.1f} MB of text")
    print(f"{'':>26}" + "".join(f"{c:>20}" for c in columns))
    for name, row in rows.items():
        print(f"{name:>26}" + "".join(f"{row[c]:>20.2f}" for c in columns))
    ours_row = rows["recursive-llm restricted"]
    total = host_after_ours + ours_row["worker peak MB"]
    budget = 2.5 * len(context) / 2**20 + 200
    print(
        f"recursive-llm host peak RSS {host_after_ours:.0f} MB (before the sandbox: {host_before:.0f} MB, "
        f"holding the context) + worker peak {ours_row['worker peak MB']:.0f} MB = {total:.0f} MB; "
        f"goal under 2.5 x context + 200 MB = {budget:.0f} MB"
    )


if __name__ == "__main__":
    main()
