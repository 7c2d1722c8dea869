"""Shared fixtures: a scripted LM for the real engine, and a local OpenAI-compatible server.

No test reaches the network: the scripted LM is a real `dspy.LM` whose engine returns replies a
test wrote, and the HTTP server listens on 127.0.0.1 for the real dspy -> HTTP path.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import dspy
import pytest
from hypothesis import settings

from rlm.testing import FakeOpenAIServer, ScriptedEngine, scripted_lm

# Price tables ship with the packages; never try to refresh them from the network in tests.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


# In CI, property tests explore a fixed set of examples so that a run is reproducible.
settings.register_profile("ci", derandomize=True, deadline=None)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture
def make_lm() -> Callable[..., tuple[dspy.LM, ScriptedEngine]]:
    return scripted_lm


@pytest.fixture
def openai_server() -> Iterator[Callable[..., FakeOpenAIServer]]:
    servers: list[FakeOpenAIServer] = []

    def start(responder: Callable[[dict[str, Any]], str], **kwargs: Any) -> FakeOpenAIServer:
        server = FakeOpenAIServer(responder, **kwargs).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def last_user_message(messages: list[dict[str, str]]) -> str:
    return next(m["content"] for m in reversed(messages) if m["role"] == "user")
