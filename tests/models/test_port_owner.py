"""Who listens on the bundled model's port: /proc/net/tcp and tcp6 read for the listener's uid."""

from __future__ import annotations

import os
import socket
import sys

import pytest

from rlm.models.port_owner import listener_uids

HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"


def _row(address: str, port: int, uid: int, state: str = "0A") -> str:
    return (
        f"   0: {address}:{port:04X} 00000000:0000 {state} 00000000:00000000 00:00000000 00000000  {uid}        0 1\n"
    )


@pytest.mark.skipif(
    sys.byteorder != "little", reason="the rows below are written as a little-endian machine writes them"
)
def test_listeners_that_take_a_connection_to_the_host_are_found_with_their_uids(tmp_path):
    (tmp_path / "tcp").write_text(
        HEADER
        + _row("0100007F", 8080, 1000)  # 127.0.0.1, LISTEN
        + _row("00000000", 8080, 65534)  # 0.0.0.0 takes 127.0.0.1 too
        + _row("0500000A", 8080, 7)  # 10.0.0.5: a connection to 127.0.0.1 never reaches it
        + _row("0100007F", 8081, 8)  # another port
        + _row("0100007F", 8080, 9, state="01")  # an established connection, not a listener
    )
    (tmp_path / "tcp6").write_text(
        HEADER
        + _row("0" * 32, 8080, 42)  # ::
        + _row("0000000000000000FFFF00000100007F", 8080, 43)  # ::ffff:127.0.0.1
        + _row("00000000000000000000000001000000", 8080, 44)  # ::1 is not 127.0.0.1
    )
    assert listener_uids("127.0.0.1", 8080, tmp_path) == {1000, 65534, 42, 43}


def test_where_proc_cannot_tell_nothing_is_claimed(tmp_path):
    assert listener_uids("127.0.0.1", 8080, tmp_path / "absent") is None


def test_a_real_listener_is_this_users():
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        uids = listener_uids("127.0.0.1", listening.getsockname()[1])
    if uids is None:
        pytest.skip("no /proc/net here")
    assert uids == {os.geteuid()}
