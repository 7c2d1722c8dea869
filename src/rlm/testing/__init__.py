"""Offline test helpers: a scripted LM and a local OpenAI-compatible server."""

from rlm.testing.openai_server import FakeOpenAIServer
from rlm.testing.scripted import ScriptedEngine, request_messages, scripted_lm

__all__ = ["FakeOpenAIServer", "ScriptedEngine", "request_messages", "scripted_lm"]
