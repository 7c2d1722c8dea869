"""The call graph of a run as a `networkx.DiGraph`, fed by engine events.

A node per RLM node and per plain sub-LM call; edges parent -> child in call order. Saved as an
offline HTML page, JSON node-link data or GraphML.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx

from rlm.events import Event, LMCalled, NodeFinished, NodeStarted, StepExecuted

PLAIN_CALLS = {"llm_query", "recursive_leaf"}


@dataclass
class CallGraph:
    graph: nx.DiGraph = field(default_factory=nx.DiGraph)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _plain_ids: int = 0

    def __call__(self, event: Event) -> None:
        with self._lock:
            if isinstance(event, NodeStarted):
                self.graph.add_node(
                    event.node_id,
                    kind=event.kind,
                    depth=event.depth,
                    query=event.query,
                    context_length=event.context_length,
                    model=event.model,
                    iterations=0,
                    llm_calls=0,
                    prompt_tokens=0,
                    completion_tokens=0,
                    cached_prompt_tokens=0,
                    tokens=0,
                    cost=0.0,
                    answer=None,
                    error=None,
                    finish_reason=None,
                    duration_s=None,
                    steps=[],
                )
                if event.parent_id is not None:
                    self.graph.add_edge(event.parent_id, event.node_id, order=self.graph.number_of_edges())
            elif isinstance(event, LMCalled):
                self._count_call(event)
            elif isinstance(event, StepExecuted) and event.node_id in self.graph:
                self.graph.nodes[event.node_id]["steps"].append(
                    {
                        "iteration": event.iteration,
                        "code": event.code,
                        "output": event.output,
                        "error": event.error,
                    }
                )
                self.graph.nodes[event.node_id]["iterations"] = event.iteration
            elif isinstance(event, NodeFinished) and event.node_id in self.graph:
                self.graph.nodes[event.node_id].update(
                    answer=event.answer,
                    error=event.error,
                    finish_reason=event.finish_reason,
                    duration_s=round(event.duration_s, 4),
                    iterations=event.iterations,
                )

    def _count_call(self, event: LMCalled) -> None:
        owner = event.node_id
        if event.purpose in PLAIN_CALLS:
            self._plain_ids += 1
            call_id = f"{owner}.llm{self._plain_ids}"
            prompt = event.messages[-1]["content"] if event.messages else ""
            self.graph.add_node(
                call_id,
                kind="llm",
                depth=event.depth + 1,
                query=prompt[:2000],
                context_length=len(prompt),
                model=event.model,
                iterations=0,
                llm_calls=1,
                prompt_tokens=event.prompt_tokens,
                completion_tokens=event.completion_tokens,
                cached_prompt_tokens=event.cached_prompt_tokens,
                tokens=event.prompt_tokens + event.completion_tokens,
                cost=event.cost,
                answer=event.output,
                error=event.error,
                finish_reason="error" if event.error else "answered",
                duration_s=round(event.latency_s, 4),
                steps=[],
            )
            if owner in self.graph:
                self.graph.add_edge(owner, call_id, order=self.graph.number_of_edges())
            return
        if owner in self.graph:
            attrs = self.graph.nodes[owner]
            attrs["llm_calls"] += 1
            attrs["prompt_tokens"] += event.prompt_tokens
            attrs["completion_tokens"] += event.completion_tokens
            attrs["cached_prompt_tokens"] += event.cached_prompt_tokens
            attrs["tokens"] = attrs["prompt_tokens"] + attrs["completion_tokens"]
            attrs["cost"] = None if attrs["cost"] is None or event.cost is None else attrs["cost"] + event.cost

    def snapshot(self) -> nx.DiGraph:
        with self._lock:
            return self.graph.copy()

    def save(self, path: str | Path) -> Path:
        """An offline HTML view (`.html`), JSON node-link data (`.json`), or GraphML otherwise."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        graph = self.snapshot()
        if target.suffix.lower() in (".html", ".htm"):
            from rlm.tracking.html_view import render_graph_html

            target.write_text(render_graph_html(graph), encoding="utf-8", errors="replace")
        elif target.suffix.lower() == ".json":
            target.write_text(json.dumps(nx.node_link_data(graph, edges="edges"), indent=2, default=str))
        else:
            flat = graph.copy()
            for _, attrs in flat.nodes(data=True):
                for key, value in list(attrs.items()):
                    if value is None:
                        attrs[key] = ""
                    elif isinstance(value, (list, dict)):
                        attrs[key] = json.dumps(value, default=str)  # ASCII: control characters escaped
                    elif isinstance(value, str):
                        attrs[key] = xml_text(value)
            nx.write_graphml(flat, target)
        return target


# What XML 1.0 cannot hold at all, even escaped: C0 controls but tab and newlines, lone
# surrogates, U+FFFE and U+FFFF. A model's answer may contain any of them (`chr(1)`). Also what
# would control a terminal that `cat`s the file: DEL, C1 controls (8-bit CSI, OSC 52) and the
# bidirectional overrides and isolates (attack round 19), as rlm/terminal.py lists them.
_NOT_XML = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff\ufffe\uffff]"
)


def xml_text(text: str) -> str:
    """`text` with each character XML forbids written as a visible escape (`\\x01`), so the GraphML
    file stays readable; the JSON graph keeps the text exactly."""

    def visible(match: re.Match[str]) -> str:
        code = ord(match.group())
        return f"\\x{code:02x}" if code < 256 else f"\\u{code:04x}"

    return _NOT_XML.sub(visible, text)


def load_graph(path: str | Path) -> nx.DiGraph:
    """A graph saved by `CallGraph.save` as JSON node-link data or GraphML (the HTML page is a view only)."""
    source = Path(path)
    if source.suffix.lower() == ".json":
        return graph_from_json(json.loads(source.read_text(encoding="utf-8")))
    graph = nx.read_graphml(source)
    for _, attrs in graph.nodes(data=True):  # undo the flattening GraphML needed
        for key, value in list(attrs.items()):
            if value == "":
                attrs[key] = None
            elif key == "steps" and isinstance(value, str):
                attrs[key] = json.loads(value)
    return graph


def graph_from_json(data: dict[str, Any]) -> nx.DiGraph:
    """The graph from node-link data as `CallGraph.save` writes it to `.json`."""
    return nx.node_link_graph(data, edges="edges")
