"""Batch throughput: 200 items at 0.5 s per LM call, locally at 1, 8 and 32 items at once, and on Ray.

Also the memory one more concurrent run costs, and how often a shared 100 MB context is loaded.
The model is a local OpenAI-compatible server that answers each call after 0.5 s (no provider is
reachable here); everything else is real: items, results file, RLM runs, restricted sandboxes.
    python -m bench.batch_throughput [--items 200] [--latency 0.5] [--no-ray]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import contextlib

import rlm
from rlm.testing import FakeOpenAIServer

ANSWER = "```python\nFINAL(context.split()[0])\n```"
PAGE = os.sysconf("SC_PAGE_SIZE")


def tree_rss_mb(root: int) -> float:
    """Resident memory of a process and all its descendants (sandbox workers included)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        with contextlib.suppress(OSError, IndexError, ValueError):
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
        todo.extend(children.get(pid, []))
    return total / 1e6


class PeakMemory:
    def __init__(self) -> None:
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.wait(0.1):
            self.peak = max(self.peak, tree_rss_mb(os.getpid()))

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def items(n: int) -> list[dict[str, str]]:
    return [{"id": str(i), "query": f"question {i}", "context": f"answer-{i} " + "text " * 200} for i in range(n)]


def timed(label: str, batch_items: list, **kwargs: object) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder, PeakMemory() as memory:
        started = time.perf_counter()
        run = rlm.batch(batch_items, out=Path(folder) / "r.jsonl", **kwargs)
        results = list(run)
        elapsed = time.perf_counter() - started
    failed = sum(not r.ok for r in results)
    per_item = sorted(r.wall_time_s for r in results)
    row = {"items": len(results), "failed": failed, "seconds": elapsed, "per_s": len(results) / elapsed,
           "item_median_s": per_item[len(per_item) // 2], "peak_mb": memory.peak, "stats": run.stats}  # fmt: skip
    print(f"{label:<28} {len(results):>4} items {failed:>2} failed  {elapsed:7.1f} s  {row['per_s']:6.2f} items/s  "
          f"median item {row['item_median_s']:.2f} s  peak RSS (tree) {memory.peak:7.0f} MB", flush=True)  # fmt: skip
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument("--shared-mb", type=int, default=100)
    args = parser.parse_args()
    server = FakeOpenAIServer(lambda body: ANSWER, delay_s=args.latency).start()
    model = {"model": "openai/test-model", "api_base": server.base_url, "max_iterations": 3}
    print(f"{args.items} items, {args.latency} s per LM call (one call per item), {os.cpu_count()} CPUs")
    rows = {}
    for concurrency in args.concurrency:
        rows[concurrency] = timed(f"local, {concurrency} at once", items(args.items), concurrency=concurrency, **model)
    if len(rows) >= 2:
        low, high = min(rows), max(rows)
        extra = (rows[high]["peak_mb"] - rows[low]["peak_mb"]) / (high - low)
        print(
            f"memory per extra concurrent run: {extra:.0f} MB (peak RSS of the process tree, {low} vs {high} at once)"
        )
    if not args.no_ray:
        import ray

        started = time.perf_counter()
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        print(f"ray.init (local cluster, {os.cpu_count()} CPUs): {time.perf_counter() - started:.1f} s")
        for cpus in (0.5, 0.25):
            timed(f"ray, {cpus} CPU per item", items(args.items), ray=True, ray_cpus_per_item=cpus, **model)
    with tempfile.TemporaryDirectory() as folder:
        corpus = Path(folder) / "corpus.txt"
        line = "shared-corpus " + "x" * 86 + "\n"
        corpus.write_text(line * (args.shared_mb * 1_000_000 // len(line)))
        shared = [{"id": str(i), "query": f"question {i}", "context_path": str(corpus)} for i in range(16)]
        local = timed(f"local, {args.shared_mb} MB shared x16", shared, concurrency=4, **model)
        print(f"  context loads (local): {local['stats'].context_loads} for 16 items")
        if not args.no_ray:
            on_ray = timed(f"ray, {args.shared_mb} MB shared x16", shared, ray=True, concurrency=4, **model)
            s = on_ray["stats"]
            print(f"  ray: {s.context_puts} put in the object store, fetched by workers {s.worker_context_loads} times")
    server.stop()


if __name__ == "__main__":
    main()
