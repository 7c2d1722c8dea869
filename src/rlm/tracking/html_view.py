"""A self-contained, offline HTML view of a run's call graph: `save_graph("run.html")`.

No CDN and no network: the page is one file holding its data, styles and a small script. Text from
the run (queries, code, outputs — model-written, so untrusted) is embedded as JSON and put on the
page with `textContent` only, never parsed as HTML.
"""

from __future__ import annotations

import json
import math
from importlib import resources
from typing import Any

import networkx as nx

from rlm.terminal import terminal_safe

X_GAP, Y_GAP, MARGIN = 170, 120, 90  # node boxes are 144 x 44, centred on their point


def layout(graph: nx.DiGraph) -> dict[str, tuple[float, float]]:
    """A tidy tree: leaves side by side in call order, each parent centred over its children.

    Walked with a stack of its own, not recursion: `rlm view` draws graph files it was handed,
    and a chain thousands of nodes deep must draw, not end in RecursionError. A node shared by two
    parents (a hand-made file) is drawn once, under the first parent that reaches it.
    """
    positions: dict[str, tuple[float, float]] = {}
    claimed: set[str] = set()
    next_slot = 0

    def claim_children(node: str) -> list[str]:
        kids = sorted(graph.successors(node), key=lambda child: graph.edges[node, child].get("order", 0))
        kids = [kid for kid in kids if kid not in claimed]
        claimed.update(kids)
        return kids

    roots = [n for n in graph.nodes if graph.in_degree(n) == 0] or list(graph.nodes)[:1]
    for root in roots:
        if root in claimed:
            continue
        claimed.add(root)
        # each frame: node, level, its children, how many were entered, their x positions
        stack: list[tuple[str, int, list[str], list[int], list[float]]] = [(root, 0, claim_children(root), [0], [])]
        while stack:
            node, level, kids, entered, xs = stack[-1]
            if entered[0] < len(kids):
                kid = kids[entered[0]]
                entered[0] += 1
                stack.append((kid, level + 1, claim_children(kid), [0], []))
                continue
            stack.pop()
            if xs:
                x = (xs[0] + xs[-1]) / 2
            else:
                x = float(next_slot)
                next_slot += 1
            positions[node] = (x, float(level))
            if stack:
                stack[-1][4].append(x)
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
    # JSON.parse refuses NaN and Infinity, which json.dumps writes for such floats: the page would be blank.
    data = json.dumps(_finite_numbers(graph_payload(graph)), default=str, ensure_ascii=False, allow_nan=False)
    # Model-written text could contain "</script>" or "<!--", which end or derail the data block.
    # Every "<" (which JSON has only inside strings) becomes JSON's own escape: the block holds
    # none, and JSON.parse reads back the same text ("<\\!--" was no JSON escape: the page broke).
    data = data.replace("<", "\\u003c")
    # ... and what would control a terminal that `cat`s the page (C1 controls, bidi overrides) as
    # JSON escapes too, which JSON.parse reads back as the same text (attack round 19).
    data = terminal_safe(data)
    page = resources.files("rlm.tracking").joinpath("graph_page.html").read_text(encoding="utf-8")
    return page.replace("__TITLE__", _escape(title)).replace("__DATA__", data)


def _finite_numbers(value: Any) -> Any:
    """`value` with every NaN or infinite float written as text ("nan", "inf"). Recursive as
    json.dumps itself is: nesting deeper than it could write fails there first, with RecursionError."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _finite_numbers(member) for key, member in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_numbers(member) for member in value]
    return value


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
