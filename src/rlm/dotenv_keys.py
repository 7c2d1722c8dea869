"""API keys from a `.env` file in the working folder, and which keys came from one.

A `.env` sits in the folder the user works in, maybe a folder of the very documents being read
(a cloned repository, an unpacked archive), so only keys are taken from it, and choices the
library makes for the user (the CLI's default model, `sandbox="auto"`) treat a key that only a
`.env` gave as someone else's until the user names its provider.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

# What a .env file may set: keys (a key is only ever sent to its own provider). Not the model: a
# planted RLM_MODEL beside a planted key sent the documents to a stranger's account (attack round 20).
DOTENV_KEY_SUFFIXES = ("_API_KEY", "_API_TOKEN")
DOTENV_SETTINGS: frozenset[str] = frozenset()

# name -> value of every key a .env gave this process
_loaded: dict[str, str] = {}


def load_dotenv_file() -> list[str]:
    """Load the API keys in `./.env` into the environment, never overriding variables already set,
    and return the names it set. Only keys: other settings act on what is already the user's. An
    OPENAI_API_BASE there received the key from the user's shell with every document, and
    RLM_SANDBOX=restricted-policy-only turned the OS jail off unseen (attack round 19)."""
    env_file = Path.cwd() / ".env"
    if not env_file.is_file():
        return []
    from dotenv import dotenv_values

    loaded, ignored = [], []
    for name, value in dotenv_values(env_file).items():
        if value is None or name in os.environ:
            continue
        if name.endswith(DOTENV_KEY_SUFFIXES) or name in DOTENV_SETTINGS:
            os.environ[name] = value
            _loaded[name] = value
            loaded.append(name)
        else:
            ignored.append(name)
    if ignored:
        warnings.warn(
            f"{env_file} sets {', '.join(sorted(ignored))}, which recursive-llm reads from the environment only, not "
            "from a .env file (only API keys are taken from it): export them in your shell to use them",
            stacklevel=2,
        )
    return loaded


def came_from_dotenv(name: str) -> bool:
    """Whether the environment's `name` is the value a `.env` gave, not one the user set."""
    return name in _loaded and os.environ.get(name) == _loaded[name]
