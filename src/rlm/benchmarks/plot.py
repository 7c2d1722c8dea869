"""Figure 1 of the paper for a suite run: score against context length, one panel per method.

Called by `suite.py` with `--plot FILE`; matplotlib with the Agg backend (no display needed).
"""

from __future__ import annotations

from pathlib import Path

from rlm.benchmarks.paper import TITLES


def plot_curves(
    curve: dict[str, dict[str, dict[int, float]]], path: str, labels: dict[str, str], title: str = ""
) -> Path:
    """Write a PNG: for each method a panel, a line per benchmark, x = tokens (log 2), y = score 0-100."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(curve)
    if not methods:
        raise ValueError("nothing to plot: the run produced no scores")
    figure, axes = plt.subplots(1, len(methods), figsize=(4.2 * len(methods), 3.6), sharey=True, squeeze=False)
    for axis, method in zip(axes[0], methods, strict=True):
        for benchmark, points in curve[method].items():
            sizes = sorted(points)
            scores = [points[s] for s in sizes]
            axis.plot(sizes, scores, marker="o", label=TITLES.get(benchmark, benchmark))
        axis.set_xscale("log", base=2)
        axis.set_ylim(-3, 103)
        axis.set_title(labels.get(method, method))
        axis.set_xlabel("context length (tokens, log scale)")
        axis.grid(alpha=0.3)
    axes[0][0].set_ylabel("score (%)")
    axes[0][-1].legend(fontsize=8)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target, dpi=110)
    plt.close(figure)
    return target
