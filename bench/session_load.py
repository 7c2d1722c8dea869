"""A session answering 10 questions over one 100 MB context against 10 separate runs.

The model is scripted (no provider is reachable here); the facade, engine and restricted sandbox
are real. Each question takes two steps: one that counts with code (and keeps its result in a
variable), one that answers. Prints the wall time and the context loads of each way, the host's
and worker's peak memory, and the size of the prompt each question of the session starts with (it
grows as the conversation carries over; `python -m bench.root_prompt_tokens --session` compares it
with and without compaction). Run:
    python -m bench.session_load
"""

from __future__ import annotations

import re
import resource
import time

from rlm import RLM
from rlm.sandbox import register_sandbox
from rlm.sandbox.local import LocalSandbox
from rlm.testing import scripted_lm

CONTEXT_MB = 100
QUESTIONS = 10
LINE = "2024-03-01 12:00:00 INFO service=api user=4711 path=/v1/items status=200 ms=12\n"


class LoadCounter:
    def __init__(self) -> None:
        self.loads = 0
        self.peak_worker_kib = 0

    def __call__(self, limits):  # a sandbox factory, registered below
        counter = self

        class Counted(LocalSandbox):
            def load(self, context):
                counter.loads += 1
                super().load(context)

            def close(self):
                if self._process is not None:
                    with open(f"/proc/{self._process.pid}/status") as status:
                        kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
                    counter.peak_worker_kib = max(counter.peak_worker_kib, kib)
                super().close()

        return Counted(limits)


def reply(messages: list[dict[str, str]]) -> str:
    # The latest question asked, whether the conversation carries earlier ones over or not.
    number = int(re.findall(r"Query: Question (\d+)", "\n".join(m["content"] for m in messages))[-1])
    if not messages[-1]["content"].startswith("Output:"):
        return f"```python\ncount_{number} = context.count('user=4711', 0, {number} * 1_000_000)\nprint(count_{number})\n```"
    return f"```python\nFINAL(count_{number})\n```"


def main() -> None:
    context = LINE * (CONTEXT_MB * 1_000_000 // len(LINE))
    counter = LoadCounter()
    register_sandbox("load-counter", counter)
    prompt_sizes: list[int] = []

    def record(messages: list[dict[str, str]]) -> str:
        if not messages[-1]["content"].startswith("Output:"):  # a question's first step
            prompt_sizes.append(sum(len(m["content"]) for m in messages))
        return reply(messages)

    lm, _ = scripted_lm(record)
    rlm = RLM(model=lm, sandbox="load-counter")

    started = time.perf_counter()
    separate = [rlm.completion(f"Question {i}", context) for i in range(1, QUESTIONS + 1)]
    separate_s, separate_loads = time.perf_counter() - started, counter.loads

    counter.loads = 0
    prompt_sizes.clear()
    started = time.perf_counter()
    with rlm.session(context) as session:
        answers = [session.completion(f"Question {i}") for i in range(1, QUESTIONS + 1)]
    session_s = time.perf_counter() - started

    assert answers == separate, (answers, separate)
    host_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"context: {len(context) / 1e6:.1f} MB, {QUESTIONS} questions, 2 steps each (scripted model)")
    print(f"{'':>22}{'wall s':>10}{'loads':>8}")
    print(f"{'10 separate runs':>22}{separate_s:>10.2f}{separate_loads:>8}")
    print(f"{'one session':>22}{session_s:>10.2f}{counter.loads:>8}")
    print(f"host peak RSS {host_mb:.0f} MB; worker peak {counter.peak_worker_kib / 1024:.0f} MB")
    print("root prompt characters per session question:", prompt_sizes)


if __name__ == "__main__":
    main()
