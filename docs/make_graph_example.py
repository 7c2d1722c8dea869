"""Regenerate docs/graph_example.png: a scripted run's graph page, shot in headless Chromium.

python docs/make_graph_example.py     (needs the [dev] extra and Debian's chromium)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    with tempfile.TemporaryDirectory() as work:
        subprocess.run([sys.executable, str(HERE.parent / "examples" / "graph_tracking.py"), "--scripted"],
                       cwd=work, check=True, capture_output=True)  # fmt: skip
        page_path = Path(work) / "out" / "graph.html"
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=shutil.which("chromium"),
                args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
            )
            page = browser.new_page(viewport={"width": 1300, "height": 760})
            page.goto(page_path.as_uri())
            page.locator("svg .node").nth(1).click()
            page.screenshot(path=str(HERE / "graph_example.png"))
            browser.close()
    print(f"wrote {HERE / 'graph_example.png'}")


if __name__ == "__main__":
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    main()
