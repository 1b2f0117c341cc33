"""Who is on the other end of a local connection: the uid that owns the connecting socket.

A Unix socket tells its peer's uid (``SO_PEERCRED``, the credentials of the process that
connected); TCP does not, but on loopback both ends are sockets of this host, and Linux lists
every TCP socket of the network namespace with its owner's uid in ``/proc/net/tcp`` and
``/proc/net/tcp6`` (readable by every user). The entry whose local address is the
connection's peer and whose remote address is this end is the connecting socket. A socket's
owner is the effective uid that created it.
"""

from __future__ import annotations

import socket
import struct

__all__ = ["peer_uid"]

_TABLES = ("/proc/net/tcp", "/proc/net/tcp6")


def peer_uid(conn: socket.socket) -> int | None:
    """The uid owning the socket at the other end of ``conn`` (an accepted connection on a
    Unix socket or a loopback address), or None when no such entry is listed (it closed
    meanwhile, or it is not on this host)."""
    if conn.family == socket.AF_UNIX:
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        return int(struct.unpack("3i", creds)[1])  # pid, uid, gid
    peer, own = conn.getpeername()[:2], conn.getsockname()[:2]
    for table in _TABLES:
        wanted = (_entry(table, *peer), _entry(table, *own))
        if None in wanted:
            continue
        try:
            with open(table, encoding="ascii") as listing:
                next(listing, None)  # the header
                for line in listing:
                    fields = line.split()
                    if len(fields) > 7 and (fields[1], fields[2]) == wanted:
                        return int(fields[7])
        except OSError:  # no IPv6 on this host, or /proc not mounted
            continue
    return None


def _entry(table: str, ip: str, port: int) -> str | None:
    """``ip:port`` as ``table`` writes it (each 32-bit word of the address in host byte order,
    in hex; the port in hex); an IPv4 address in the IPv6 table is its mapped form. None where
    the table can't list the address."""
    if ":" in ip:
        if not table.endswith("6"):
            return None
        packed = socket.inet_pton(socket.AF_INET6, ip.split("%")[0])
    else:
        packed = socket.inet_aton(ip)
        if table.endswith("6"):
            packed = b"\0" * 10 + b"\xff\xff" + packed
    words = struct.unpack(f"={len(packed) // 4}I", packed)
    return "".join(f"{word:08X}" for word in words) + f":{port:04X}"
