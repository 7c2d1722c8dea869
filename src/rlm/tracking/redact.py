"""Secrets out of text the library writes down: provider error messages sometimes quote the key.

Used where error text enters events (and so the history, the graph and batch results).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

# Environment variables whose values are secrets, by the names providers use.
SECRET_SUFFIXES = ("_API_KEY", "_TOKEN", "_SECRET")
# Shorter values are not keys and would blank out ordinary words.
MIN_SECRET_CHARS = 8


def known_secrets(extra: Iterable[object] = ()) -> tuple[str, ...]:
    """Key values in the environment, plus `extra` (e.g. an api_key given in code), longest first."""
    values = {v for k, v in os.environ.items() if k.endswith(SECRET_SUFFIXES) and len(v) >= MIN_SECRET_CHARS}
    values.update(v for v in extra if isinstance(v, str) and len(v) >= MIN_SECRET_CHARS)
    return tuple(sorted(values, key=len, reverse=True))


def redact(text: str, secrets: Iterable[str] | None = None) -> str:
    for secret in known_secrets() if secrets is None else secrets:
        if secret in text:
            text = text.replace(secret, "[redacted]")
    return text
