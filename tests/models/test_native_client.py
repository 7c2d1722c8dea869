"""Model names are served by DSPy's native client (lm15), offline-clean, and `import rlm` stays light.

Each check runs in a fresh interpreter, since what matters is what a process imports and connects to.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rlm import RLM, APIKeyNotFoundError, ProviderError
from rlm.engine.prompts import INSTRUCTIONS

# Refuses and records every connection and name lookup except the one local server. Installed
# before anything else is imported, so nothing (DSPy, LiteLLM, the library) can slip past it.
SOCKET_GUARD = """
import socket, sys
ALLOWED = ("127.0.0.1", int(sys.argv[1]))
attempts = []
def _check(address):
    if isinstance(address, tuple) and tuple(address[:2]) != ALLOWED:
        attempts.append(repr(address))
        raise OSError("network refused by the test's socket guard")
_connect, _connect_ex, _create, _getaddrinfo = (
    socket.socket.connect, socket.socket.connect_ex, socket.create_connection, socket.getaddrinfo)
def connect(self, address):
    _check(address)
    return _connect(self, address)
def connect_ex(self, address):
    _check(address)
    return _connect_ex(self, address)
def create_connection(address, *args, **kwargs):
    _check(address)
    return _create(address, *args, **kwargs)
def getaddrinfo(host, port, *args, **kwargs):
    if host not in ("127.0.0.1", b"127.0.0.1"):
        attempts.append(f"getaddrinfo({host!r}, {port!r})")
        raise socket.gaierror("name lookup refused by the test's socket guard")
    return _getaddrinfo(host, port, *args, **kwargs)
socket.socket.connect, socket.socket.connect_ex = connect, connect_ex
socket.create_connection, socket.getaddrinfo = create_connection, getaddrinfo
"""

FULL_QUERY = """
import asyncio
from rlm import RLM
rlm = RLM(model="openai/root-model", recursive_model="openai/sub-model", api_base=sys.argv[2])
result = rlm.run("Summarise", "helloworld")
second = asyncio.run(rlm.acompletion("Summarise", "helloworld"))
print(json.dumps({"answer": result.answer, "async_answer": second, "attempts": attempts,
                  "litellm": "litellm" in sys.modules, "usage": result.usage["openai/root-model"].prompt_tokens}))
"""


def run_python(code: str, *args: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    # Without the variables a user would not have set: the library must need none of them.
    env = {k: v for k, v in os.environ.items() if not k.startswith("LITELLM_") and not k.endswith("_API_KEY")}
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


def scripted_server(openai_server):
    def responder(body):
        if not any(INSTRUCTIONS[:60] in (m.get("content") or "") for m in body["messages"]):
            return f"summary of {body['messages'][-1]['content']}"
        if any(m["role"] == "assistant" for m in body["messages"]):
            return "FINAL(both halves read)"
        return "```python\nparts = llm_query_batched([context[:5], context[5:]])\nprint(parts)\n```"

    return openai_server(responder)


def test_a_full_query_with_a_model_name_is_served_natively_and_connects_nowhere_else(openai_server):
    server = scripted_server(openai_server)
    port = str(server.server.server_port) if server.server else ""
    code = "import json, sys\n" + SOCKET_GUARD + FULL_QUERY
    done = run_python(code, port, server.base_url)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["answer"] == report["async_answer"] == "both halves read"
    assert report["usage"] == 100  # two root calls, as the server reported them
    assert report["attempts"] == []  # no price table, no model metadata, no telemetry
    assert report["litellm"] is False  # DSPy's native client served every call
    assert "warn" not in done.stderr.lower(), done.stderr
    assert {r["max_tokens"] for r in server.requests} == {2048}  # the field llama.cpp's server honours


def test_a_users_own_price_table_setting_is_kept():
    done = run_python("import os, rlm; print(os.environ['LITELLM_LOCAL_MODEL_COST_MAP'])",
                      env_extra={"LITELLM_LOCAL_MODEL_COST_MAP": "False"})  # fmt: skip
    assert done.stdout.strip() == "False"


def test_hosted_provider_names_resolve_without_loading_litellm():
    code = textwrap.dedent("""
        import sys
        from dspy.clients.backend_selection import select_backend
        from rlm import RLM
        lms = [RLM(model=name, api_key="sk-test").lm for name in ("gpt-4o-mini", "claude-sonnet-4", "gpt-5-mini")]
        print([select_backend(lm).native for lm in lms], "litellm" in sys.modules)
    """)
    done = run_python(code)
    assert done.stdout.strip() == "[True, True, True] False", done.stderr


def test_import_rlm_and_rlm_help_load_no_heavy_packages():
    code = textwrap.dedent("""
        import sys
        import rlm
        heavy = ("dspy", "litellm", "networkx", "rlm.facade")
        after_import = [m for m in heavy if m in sys.modules]
        from rlm.cli.main import main
        try:
            main(["--help"])
        except SystemExit:
            pass
        print(after_import, [m for m in heavy if m in sys.modules], file=sys.stderr)
    """)
    done = run_python(code)
    assert done.stderr.strip().splitlines()[-1] == "[] []"


def test_every_public_name_is_importable_from_the_package():
    import rlm

    assert all(getattr(rlm, name) is not None for name in rlm.__all__)
    assert set(rlm.__all__) <= set(dir(rlm))


class StatusServer:
    """Answers every request with one HTTP status and an OpenAI-shaped error body, counting requests."""

    def __init__(self, status: int) -> None:
        self.status, self.count = status, 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                owner.count += 1
                data = json.dumps({"error": {"message": "refused", "type": "error", "code": None}}).encode()
                self.send_response(owner.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base_url = f"http://127.0.0.1:{self.server.server_port}/v1"


@pytest.fixture
def status_server() -> Iterator[type[StatusServer]]:
    servers: list[StatusServer] = []

    def start(status: int) -> StatusServer:
        servers.append(StatusServer(status))
        return servers[-1]

    yield start  # type: ignore[misc]
    for server in servers:
        server.server.shutdown()
        server.server.server_close()


def test_provider_faults_on_the_native_path_are_retried_then_raised(status_server):
    server = status_server(503)
    rlm = RLM(model="openai/m", api_base=server.base_url, num_retries=1)
    with pytest.raises(ProviderError, match=r"^The call to model 'openai/m' failed"):
        rlm.completion("q", "ctx")
    assert server.count == 2


def test_a_rejected_key_on_the_native_path_is_reported_as_a_key_problem(status_server):
    server = status_server(401)
    rlm = RLM(model="openai/m", api_base=server.base_url, api_key="sk-wrong")
    with pytest.raises(APIKeyNotFoundError, match=r"^API key not found or rejected for model 'openai/m'"):
        rlm.completion("q", "ctx")
    assert server.count == 1  # never retried


@pytest.fixture
def no_proxy_variables(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


def test_a_server_behind_api_base_is_reached_through_the_proxy_the_environment_names(openai_server, no_proxy_variables):
    from rlm.models.resolve import build_lm

    proxy = openai_server(lambda body: "through the proxy")
    no_proxy_variables.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.server.server_port}")  # type: ignore[union-attr]
    lm = build_lm("openai/served", api_base="http://models.invalid/v1")
    no_proxy_variables.delenv("HTTP_PROXY")  # read when the LM was built, as httpx clients read it
    assert lm("hi") == ["through the proxy"]
    assert len(proxy.requests) == 1


def test_no_proxy_exempts_a_server_behind_api_base(openai_server, no_proxy_variables):
    from rlm.models.resolve import build_lm

    server = openai_server(lambda body: "direct")
    no_proxy_variables.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    no_proxy_variables.setenv("NO_PROXY", "127.0.0.1")
    assert build_lm("openai/served", api_base=server.base_url)("hi") == ["direct"]
