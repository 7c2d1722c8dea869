"""The call graph of a real multi-depth run: structure, attributes, files."""

from __future__ import annotations

import json

import pytest


def test_graph_has_one_node_per_rlm_node_and_plain_call_in_call_order(multi_depth_run):
    rlm, result, _ = multi_depth_run
    assert result.answer == "total is 6"
    graph = rlm.get_graph()
    root = next(n for n, d in graph.nodes(data=True) if d["depth"] == 0)
    children = sorted(graph.successors(root), key=lambda c: graph.edges[root, c]["order"])
    kinds = [graph.nodes[c]["kind"] for c in children]
    assert kinds == ["rlm", "rlm", "llm"]
    assert graph.number_of_nodes() == 4 and graph.number_of_edges() == 3


def test_node_attributes_describe_the_run(multi_depth_run):
    rlm, result, _ = multi_depth_run
    graph = rlm.get_graph()
    attrs = {d["depth"]: d for _, d in graph.nodes(data=True) if d["kind"] == "rlm"}
    root = attrs[0]
    assert root["query"] == "How many a?" and root["context_length"] == 12
    assert root["iterations"] == 3 and root["finish_reason"] == "final" and root["answer"] == "total is 6"
    assert root["llm_calls"] == 3 and root["model"] == "scripted/root" and root["error"] is None
    assert root["tokens"] == root["prompt_tokens"] + root["completion_tokens"] > 0
    assert root["duration_s"] > 0
    assert [s["iteration"] for s in root["steps"]] == [1, 2, 3]
    assert "recursive_llm_batched" in root["steps"][0]["code"]
    assert "['3', '3']" in root["steps"][0]["output"]
    child = attrs[1]
    assert child["model"] == "scripted/sub" and child["context_length"] == 6 and child["answer"] == "3"
    total_calls = sum(d["llm_calls"] for _, d in graph.nodes(data=True))
    assert total_calls == result.llm_calls


def test_graph_is_saved_after_the_run_as_an_offline_page(multi_depth_run):
    _, _, tmp_path = multi_depth_run
    page = (tmp_path / "graph.html").read_text()
    assert "<script src" not in page and "<link" not in page and "https://" not in page
    data = json.loads(page.split('id="graph-data">', 1)[1].split("</script>", 1)[0])
    assert len(data["nodes"]) == 4


def test_json_and_graphml_exports(multi_depth_run, tmp_path):
    import networkx as nx

    rlm, _, _ = multi_depth_run
    node_link = json.loads(rlm.save_graph(tmp_path / "g.json").read_text())
    assert len(node_link["nodes"]) == 4
    assert nx.read_graphml(rlm.save_graph(tmp_path / "g.graphml")).number_of_nodes() == 4


def test_model_text_cannot_break_out_of_the_page(make_lm, tmp_path):
    from rlm import RLM
    from rlm.tracking.html_view import render_graph_html

    lm, _ = make_lm(["FINAL(</script><script>window.pwned = 1</script>)"])
    rlm = RLM(model=lm, enable_graph_tracking=True)
    rlm.completion("</script><b>query</b>", "ctx")
    page = render_graph_html(rlm.get_graph())
    assert "</script><script>window.pwned" not in page
    assert page.count("</script>") == 2  # the data block and the page script, nothing injected


def test_a_page_of_a_graph_with_nan_or_infinite_numbers_still_parses():
    import networkx as nx

    from rlm.tracking.html_view import render_graph_html

    graph = nx.DiGraph()
    graph.add_node("root", cost_usd=float("nan"), tokens=[1, float("inf")], query="q")
    graph.add_node("child", wall_s=float("-inf"))
    graph.add_edge("root", "child", order=0)
    page = render_graph_html(graph)
    data = json.loads(  # Python's parser takes NaN; the browser's JSON.parse would not: strict here
        page.split('id="graph-data">', 1)[1].split("</script>", 1)[0],
        parse_constant=lambda name: pytest.fail(f"{name} in the page's data"),
    )
    root = next(node for node in data["nodes"] if node["id"] == "root")
    assert (root["cost_usd"], root["tokens"]) == ("nan", [1, "inf"])
