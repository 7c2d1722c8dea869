"""Shared by the benches that start a model server of their own."""

from __future__ import annotations

import time
import urllib.request


def wait_until_serving(base_url: str, seconds: float = 600) -> None:
    """Return once `base_url`/models answers; raise TimeoutError if it never does."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{base_url}/models", timeout=2).read()
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"no model server answered at {base_url} within {seconds:.0f} s")
