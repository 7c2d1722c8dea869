"""Eighteenth attack round, the bundled model server: its listener after the first check, when our
server died or its record outlived it and another local user's process holds the port.

Round 18 in six files by topic (test_attacks_round18_*.py; this one: local_server). The round found
seven holes as strict xfails (reproductions, causes and suggested fixes in
/tmp/s10/attack18/HOLES.md), all closed the same session.

This topic's hole (numbered as the round's):
3. the bundled server's listener is checked once per process: after that server dies, another
   local user's process on its port receives every later prompt of that process (the document).
The fix: a server record's guard pid must still run our guard, and the listener is checked again
whenever an RLM asks for the server and before each request (models/server_engine.py `before_request`).
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
from pathlib import Path

import pytest

from rlm import RLM
from rlm.errors import ConfigurationError
from tests.sandbox.port_listeners import as_another_user, free_port, local_server_at, never_launch, serve_listener, stop


@as_another_user
@pytest.mark.parametrize("how", ["our server died", "stale record of a reused pid", "our server died mid-run"])
def test_a_later_run_never_sends_the_document_to_another_users_listener(monkeypatch, how):
    from rlm.models import local_server

    work = Path(tempfile.mkdtemp(prefix="rlm-round18-"))
    work.chmod(0o777)  # the other user's process writes what it received here
    port = free_port()
    local_server_at(monkeypatch, port, work / "cache")
    model_id = local_server.SERVED_MODEL_ID
    server = local_server.LocalServer(port=port)
    server.record_path.parent.mkdir(parents=True, exist_ok=True)
    built = None
    if how.startswith("our server died"):
        # This user's server (a stand-in answering as the bundled model), with the record a started one leaves.
        ours = serve_listener(port, model_id, work / "ours.jsonl", "this-user")
        server.record_path.write_text(json.dumps({"guard_pid": ours.pid, "port": port, "model": model_id}))
        attached = RLM(model="local", max_iterations=2)  # attaches: the listener is this user's
        if how.endswith("mid-run"):
            built = attached  # its requests are sent after the port changed hands
        stop(ours)  # it dies (the OOM killer, a crash); another user's process takes the port first
    else:
        # A guard killed with SIGKILL left its record; its pid now belongs to another process of this
        # user (here, this one). It attached with nothing listening; now the record is not trusted
        # (that pid runs no guard), so a server of its own would be started (stubbed here).
        server.record_path.write_text(json.dumps({"guard_pid": os.getpid(), "port": port, "model": model_id}))

        def would_start(self, wait_s):
            raise ConfigurationError("the test stands in for starting the real model server")

        monkeypatch.setattr(local_server.LocalServer, "_launch", would_start)
        with pytest.raises(ConfigurationError, match="stands in for starting"):
            RLM(model="local")
    squatter = serve_listener(port, model_id, work / "squatter.jsonl", "other-user")
    try:
        try:
            answer = (built or RLM(model="local", max_iterations=2)).run("Summarise.", "SECRET-DOCUMENT-7f3a").answer
        except Exception as exc:  # refused: what should happen
            answer = f"refused: {exc}"
        seen = (work / "squatter.jsonl").read_text() if (work / "squatter.jsonl").exists() else ""
    finally:
        stop(squatter)
        local_server._managed = None
    assert "SECRET-DOCUMENT-7f3a" not in seen, "another user's process received the document"
    assert answer != "chosen by another user"


@as_another_user
@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6")
@pytest.mark.parametrize("address", ["0.0.0.0", "::", "::ffff:127.0.0.1"])
def test_another_users_listener_on_a_wildcard_or_ipv6_address_is_never_adopted(monkeypatch, tmp_path, address):
    from rlm.models import local_server

    tmp_path.chmod(0o777)
    port = free_port()
    local_server_at(monkeypatch, port, tmp_path / "cache")
    monkeypatch.setattr(local_server.LocalServer, "_launch", never_launch)
    squatter = serve_listener(port, local_server.SERVED_MODEL_ID, tmp_path / "seen.jsonl", "other-user", address)
    try:
        with pytest.raises(ConfigurationError, match="another user's program"):
            local_server.ensure_local_server()
    finally:
        stop(squatter)
        local_server._managed = None
    assert not (tmp_path / "seen.jsonl").exists()  # no prompt went there
