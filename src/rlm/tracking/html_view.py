"""A self-contained, offline HTML view of a run's call graph: `save_graph("run.html")`.

No CDN and no network: the page is one file holding its data, styles and a small script. Text from
the run (queries, code, outputs — model-written, so untrusted) is embedded as JSON and put on the
page with `textContent` only, never parsed as HTML.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import networkx as nx

X_GAP, Y_GAP, MARGIN = 170, 120, 90  # node boxes are 144 x 44, centred on their point


def layout(graph: nx.DiGraph) -> dict[str, tuple[float, float]]:
    """A tidy tree: leaves side by side in call order, each parent centred over its children."""
    positions: dict[str, tuple[float, float]] = {}
    next_slot = [0]

    def children(node: str) -> list[str]:
        return sorted(graph.successors(node), key=lambda child: graph.edges[node, child].get("order", 0))

    def place(node: str, level: int) -> float:
        kids = [k for k in children(node) if k not in positions]
        if not kids:
            x = float(next_slot[0])
            next_slot[0] += 1
        else:
            xs = [place(kid, level + 1) for kid in kids]
            x = (xs[0] + xs[-1]) / 2
        positions[node] = (x, float(level))
        return x

    roots = [n for n in graph.nodes if graph.in_degree(n) == 0] or list(graph.nodes)[:1]
    for root in roots:
        if root not in positions:
            place(root, 0)
    return {n: (MARGIN + x * X_GAP, MARGIN + y * Y_GAP) for n, (x, y) in positions.items()}


def _status(attrs: dict[str, Any]) -> str:
    if attrs.get("error"):
        return "error"
    reason = attrs.get("finish_reason")
    if reason in (None, ""):
        return "running"
    return "ok" if reason in ("final", "answered") else "partial"


def graph_payload(graph: nx.DiGraph) -> dict[str, Any]:
    positions = layout(graph)
    nodes = []
    for node, attrs in graph.nodes(data=True):
        x, y = positions.get(node, (MARGIN, MARGIN))
        nodes.append({"id": node, "x": x, "y": y, "status": _status(attrs), **attrs})
    edges = [{"source": u, "target": v} for u, v in graph.edges]
    width = max((n["x"] for n in nodes), default=0) + MARGIN + 80
    height = max((n["y"] for n in nodes), default=0) + MARGIN + 40
    return {"nodes": nodes, "edges": edges, "width": width, "height": height}


def render_graph_html(graph: nx.DiGraph, title: str = "RLM call graph") -> str:
    data = json.dumps(graph_payload(graph), default=str, ensure_ascii=False)
    # Model-written text could contain "</script>" or "<!--", which end or derail the data block.
    # Every "<" (which JSON has only inside strings) becomes JSON's own escape: the block holds
    # none, and JSON.parse reads back the same text ("<\\!--" was no JSON escape: the page broke).
    data = data.replace("<", "\\u003c")
    page = resources.files("rlm.tracking").joinpath("graph_page.html").read_text(encoding="utf-8")
    return page.replace("__TITLE__", _escape(title)).replace("__DATA__", data)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
