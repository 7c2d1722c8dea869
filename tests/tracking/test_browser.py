"""The graph page in a real headless Chromium: it renders every node and shows details on click."""

from __future__ import annotations

import shutil

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")

LAUNCH_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


@pytest.fixture
def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        yield page
        browser.close()


def test_page_renders_every_node_and_shows_details_after_a_click(multi_depth_run, page):
    _, _, tmp_path = multi_depth_run
    page.goto((tmp_path / "graph.html").as_uri())
    assert page.locator("svg .node").count() == 4
    assert page.evaluate("window.rlmGraph.nodes") == 4
    page.locator("svg .node").first.click()
    details = page.locator("#details")
    assert "How many a?" in details.inner_text()
    assert "recursive_llm_batched" in details.inner_text()
    assert "Step 3" in details.inner_text()
    page.locator("#colour-mode").click()
    assert "depth 1" in page.locator("#legend").inner_text()


def test_page_shows_model_text_as_text(make_lm, tmp_path, page):
    from rlm import RLM

    lm, _ = make_lm(["FINAL(<img src=x onerror=window.pwned=1>)"])
    path = tmp_path / "g.html"
    RLM(model=lm, graph_output_path=path).completion("<b>bold?</b>", "ctx")
    page.goto(path.as_uri())
    page.locator("svg .node").first.click()
    assert "<img src=x onerror=window.pwned=1>" in page.locator("#details").inner_text()
    assert page.evaluate("window.pwned === undefined")
