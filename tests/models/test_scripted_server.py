"""The scripted OpenAI-compatible test server: kept-alive connections and a scripted `usage` field."""

from __future__ import annotations

import http.client
import json
from typing import Any
from urllib.parse import urlsplit

from rlm import RLM


def _post(connection: http.client.HTTPConnection, path: str) -> dict[str, Any]:
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    connection.request("POST", f"{path}/chat/completions", body, {"Content-Type": "application/json"})
    response = connection.getresponse()
    assert response.status == 200
    return dict(json.loads(response.read()))


def test_one_connection_serves_several_requests(openai_server):
    server = openai_server(lambda body: "pong")
    url = urlsplit(server.base_url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=5)
    try:
        first = _post(connection, url.path)
        socket_after_first = connection.sock
        second = _post(connection, url.path)
        assert connection.sock is socket_after_first  # not closed by the server in between
    finally:
        connection.close()
    assert first["choices"][0]["message"]["content"] == second["choices"][0]["message"]["content"] == "pong"
    assert len(server.requests) == 2


def test_usage_option_writes_the_usage_the_engine_reads(openai_server):
    def usage(body: dict[str, Any]) -> dict[str, Any]:
        return {"prompt_tokens": 700, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 512}}

    server = openai_server(lambda body: "```python\nFINAL('done')\n```", usage=usage)
    result = RLM(model="openai/bench", api_base=server.base_url).run("q", "some context")
    assert result.answer == "done"
    assert result.cached_prompt_tokens == 512 * result.iterations
    assert result.usage["openai/bench"].prompt_tokens == 700 * result.iterations
