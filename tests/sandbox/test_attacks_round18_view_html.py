"""Eighteenth attack round, `rlm view --html` of hostile node attributes (markup, lists and nulls
where numbers and text belong, `__proto__` ids, edges to missing nodes, unorderable orders, cycles,
the page template's own markers): the page holds one data block it can parse, or the command refuses.
Held (no hole).

Round 18 in six files by topic (test_attacks_round18_*.py; this one: view_html). The round found
seven holes as strict xfails (reproductions, causes and suggested fixes in
/tmp/s10/attack18/HOLES.md), all closed the same session.
"""

from __future__ import annotations

import contextlib
import io
import json

import pytest


def _graph(nodes: list, edges: list) -> dict:
    return {"directed": True, "multigraph": False, "nodes": nodes, "edges": edges}


HOSTILE_GRAPHS = {
    "x as markup": _graph([{"id": "r", "x": "</script><script>alert(1)</script>"}], []),
    "x as a list": _graph([{"id": "r", "x": [1, 2]}, {"id": "a", "x": [3]}], [{"source": "r", "target": "a"}]),
    "y as null": _graph([{"id": "r", "y": None}], []),
    "status as markup": _graph([{"id": "r", "status": "<img src=x onerror=alert(1)>"}], []),
    "__proto__ id": _graph([{"id": "__proto__", "status": "constructor", "depth": "x"}], []),
    "edge to a missing node": _graph([{"id": "r"}], [{"source": "r", "target": "ghost"}]),
    "orders of mixed types": _graph(
        [{"id": "r"}, {"id": "a"}, {"id": "b"}],
        [{"source": "r", "target": "a", "order": "z"}, {"source": "r", "target": "b", "order": 1}],
    ),
    "orders unorderable": _graph(
        [{"id": "r"}, {"id": "a"}, {"id": "b"}],
        [{"source": "r", "target": "a", "order": {}}, {"source": "r", "target": "b", "order": {}}],
    ),
    "a cycle": _graph([{"id": "r"}, {"id": "a"}], [{"source": "r", "target": "a"}, {"source": "a", "target": "r"}]),
    "template markers": _graph([{"id": "__DATA__", "query": "__TITLE__ __DATA__"}], []),
    "unhashable finish": _graph([{"id": "r", "finish_reason": {"a": 1}, "error": {"b": 2}}], []),
}


@pytest.mark.parametrize("graph", HOSTILE_GRAPHS.values(), ids=HOSTILE_GRAPHS.keys())
def test_rlm_view_html_of_hostile_node_attributes_refuses_or_writes_one_data_block(tmp_path, graph):
    from rlm.cli.main import main

    source, page_path = tmp_path / "g.json", tmp_path / "g.html"
    source.write_text(json.dumps(graph))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(["view", str(source), "--html", str(page_path)])
    assert status in (0, 2) and "Traceback" not in err.getvalue(), err.getvalue()[-500:]
    if status == 0:
        page = page_path.read_text(encoding="utf-8")
        start = page.index('id="graph-data">') + len('id="graph-data">')
        assert page.count("</script>") == 2  # the data block's and the script's: nothing closed early
        assert page.count('id="graph-data"') == 1
        json.loads(page[start : page.index("</script>", start)])  # the page can parse its data
