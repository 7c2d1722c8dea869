"""Who listens on a local TCP port: the uid /proc/net/tcp and tcp6 give for its listening socket.

The bundled model's server is found by port. Any local user can listen there first and answer as
the bundled model (its id is public): every prompt, the user's documents, would go to that user's
process and its replies would drive the run (attack round 17). A server is only ever used when the
listener is this user's own. Read from /proc by hand: psutil would be a dependency for one table.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
from pathlib import Path

_LISTEN = "0A"  # the TCP state column's value for LISTEN


def listener_uids(host: str, port: int, proc_net: Path = Path("/proc/net")) -> set[int] | None:
    """The uids owning sockets that listen on `port` and accept connections to `host`; None where
    /proc cannot tell (not Linux)."""
    try:
        wanted = ipaddress.ip_address(socket.gethostbyname(host))
    except (OSError, ValueError):
        return None
    uids: set[int] = set()
    readable = False
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc_net / table).read_text().splitlines()[1:]
        except OSError:
            continue
        readable = True
        for line in lines:
            fields = line.split()
            if len(fields) < 8 or fields[3] != _LISTEN:
                continue
            address, _, port_hex = fields[1].partition(":")
            if int(port_hex, 16) == port and _accepts(_address(address), wanted):
                uids.add(int(fields[7]))
    return uids if readable else None


def _address(hex_address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """/proc writes an address as 32-bit words, each in the machine's byte order."""
    raw = bytes.fromhex(hex_address)
    if sys.byteorder == "little":
        raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return ipaddress.ip_address(raw)


def _accepts(
    listening: ipaddress.IPv4Address | ipaddress.IPv6Address, wanted: ipaddress.IPv4Address | ipaddress.IPv6Address
) -> bool:
    if isinstance(listening, ipaddress.IPv6Address) and listening.ipv4_mapped is not None:
        listening = listening.ipv4_mapped
    if listening.is_unspecified:  # 0.0.0.0 or :: takes every address of its family (:: IPv4 too, by default)
        return True
    return listening == wanted


def foreign_listener(host: str, port: int) -> int | None:
    """The uid of another user listening on `port` for `host`, or None if every listener is this
    user's own (or /proc cannot tell)."""
    uids = listener_uids(host, port)
    others = sorted(uid for uid in uids or () if uid != os.geteuid())
    return others[0] if others else None
