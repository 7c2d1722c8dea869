"""`rlm view FILE`: read a saved history, call graph or batch results in the terminal, or turn a graph into HTML."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TextIO
from xml.etree import ElementTree

import networkx as nx

from rlm.errors import ConfigurationError
from rlm.tracking.graph import graph_from_json, load_graph
from rlm.tracking.history import CallHistory
from rlm.utf8 import utf8_values


def load_saved(path: str) -> tuple[str, Any]:
    """("history", records), ("graph", DiGraph), ("batch", summary table) or ("chat", records) from a
    file written by --history, --graph, `rlm batch --out` or `rlm chat`'s /save."""
    source = Path(path)
    if not source.is_file():
        raise ConfigurationError(
            f"{path}: no such file. Pass a file written by --history, --graph or `rlm batch --out` (results .jsonl)."
        )
    suffix = source.suffix.lower()
    if suffix in (".html", ".htm"):
        raise ConfigurationError(f"{path} is already a view: open it in a browser.")
    if suffix in (".graphml", ".xml"):
        try:
            graph = load_graph(source)
        except (ElementTree.ParseError, nx.NetworkXError, ValueError, KeyError, TypeError, OverflowError) as exc:
            raise ConfigurationError(
                f"{path} is not readable GraphML ({type(exc).__name__}: {exc}); expected a graph saved by --graph."
            ) from exc
        return "graph", _call_graph(graph, path)
    if suffix == ".jsonl":  # results of `rlm batch`: its summary table again
        from rlm.batch.progress import summary_table
        from rlm.batch.store import load_results

        try:
            return "batch", summary_table(load_results(source).values(), [f"results in {path}"])
        except (TypeError, ValueError, RecursionError, OverflowError) as exc:  # rows of the wrong types: not our file
            raise ConfigurationError(
                f"{path} is not a results file written by rlm batch ({type(exc).__name__}: {exc})"
            ) from exc
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigurationError(f"{path} is not JSON ({exc}); expected a saved history or graph.") from exc
    except (ValueError, RecursionError) as exc:  # a number past the digit limit, nesting past the stack
        raise ConfigurationError(
            f"{path} was not written by rlm ({type(exc).__name__}: {str(exc)[:120]}); expected a saved history "
            "or graph."
        ) from None
    data = utf8_values(data)  # a "\ud800" escape: nothing could print or write it
    if isinstance(data, list):
        if not all(isinstance(record, dict) for record in data):
            raise ConfigurationError(f"{path} is a JSON list, but not of LM call records: not a saved history.")
        if data and all("question" in record and "finish_reason" in record for record in data):
            return "chat", data  # `rlm chat`'s /save: one record per question
        return "history", data
    if isinstance(data, dict) and "nodes" in data:
        try:
            graph = graph_from_json(data)  # already read: not load_graph, which would read it again
        except (nx.NetworkXError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigurationError(f"{path} is not a graph saved by --graph ({type(exc).__name__}: {exc})") from exc
        return "graph", _call_graph(graph, path)
    raise ConfigurationError(f"{path} is neither a history (a JSON list) nor a graph (JSON with 'nodes').")


def _call_graph(graph: nx.Graph, path: str) -> nx.DiGraph:
    """`graph` if it has the shape of a saved call graph (directed, one edge per call)."""
    if not graph.is_directed() or graph.is_multigraph():
        raise ConfigurationError(f"{path} was not written by rlm: calls form a directed graph, not this one.")
    return graph


def print_history(records: list[dict[str, Any]], detailed: bool, max_length: int, out: TextIO) -> None:
    CallHistory(records=records).print(detailed=detailed, max_length=max_length, file=out)
    prompt = sum(int(r.get("prompt_tokens") or 0) for r in records)
    completion = sum(int(r.get("completion_tokens") or 0) for r in records)
    print(f"{len(records)} LM calls, {prompt}+{completion} tokens", file=out)


def print_chat(records: list[dict[str, Any]], detailed: bool, max_length: int, out: TextIO) -> None:
    """`rlm chat`'s saved questions: each with its answer and how its run ended (--detailed: its steps)."""
    for number, record in enumerate(records, 1):
        print(f"{number}. Q: {_one_line(record['question'], max_length)}", file=out)
        print(f"   A: {_one_line(record.get('answer'), max_length)}", file=out)
        cost = "unknown" if record.get("cost") is None else f"${float(record['cost']):.4f}"
        print(
            f"   [{record['finish_reason']}; {int(record.get('iterations') or 0)} steps; "
            f"{int(record.get('llm_calls') or 0)} LM calls; cost {cost}; "
            f"{float(record.get('wall_time_s') or 0):.1f} s]",
            file=out,
        )
        for step in record.get("trajectory") or [] if detailed else []:
            print(f"   step {step.get('iteration')}: {_one_line(step.get('code'), max_length)}", file=out)
            shown = step.get("error") or step.get("output")
            print(f"      -> {_one_line(shown, max_length)}", file=out)


def print_tree(graph: nx.DiGraph, max_length: int, out: TextIO) -> None:
    """One line per node, children indented under their parent in call order. Each node is shown
    once: a file from elsewhere may hold a node reached twice (a graph of 30 diamonds in a row has
    2**30 paths to its last node) or a cycle."""

    def children(node: str) -> list[str]:
        return sorted(graph.successors(node), key=lambda child: graph.edges[node, child].get("order", 0))

    def show(node: str, depth: int) -> None:
        indent = _indent(depth)
        a = graph.nodes[node]
        status = "error" if a.get("error") else a.get("finish_reason") or "running"
        steps = f"{a.get('iterations') or 0} steps, " if a.get("kind") != "llm" else ""
        name = _one_line(node, max_length)  # a foreign file's node id can be any length
        print(
            f"{indent}{name} [{status}] {a.get('model')}: {steps}{a.get('llm_calls') or 0} LM calls, "
            f"{a.get('tokens') or 0} tokens, {float(a.get('duration_s') or 0):.1f} s",
            file=out,
        )
        print(f"{indent}  Q: {_one_line(a.get('query'), max_length)}", file=out)
        print(f"{indent}  A: {_one_line(a.get('error') or a.get('answer'), max_length)}", file=out)

    roots = [n for n in graph.nodes if graph.in_degree(n) == 0]
    if not roots:
        print("(empty graph)" if not graph.nodes else "(no root: every node has a caller)", file=out)
    shown: set[str] = set()
    pending = [(root, 0) for root in reversed(roots)]  # depth first, without recursion (any depth)
    while pending:
        node, indent = pending.pop()
        if node in shown:
            print(f"{_indent(indent)}{_one_line(node, max_length)} (shown above)", file=out)
            continue
        shown.add(node)
        show(node, indent)
        pending.extend((child, indent + 1) for child in reversed(children(node)))


# Deeper levels are numbered, not indented further: indentation per level made a deep chain's
# output grow with the square of its depth (a 225 KB file printed 48 MB; attack round 14).
MAX_INDENT_LEVELS = 12


def _indent(depth: int) -> str:
    if depth <= MAX_INDENT_LEVELS:
        return "  " * depth
    return "  " * MAX_INDENT_LEVELS + f"[level {depth}] "


def _one_line(text: Any, limit: int) -> str:
    line = " ".join(str(text or "").split())
    return line if len(line) <= limit else f"{line[:limit]}..."
