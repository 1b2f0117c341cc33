"""A kernel's private folder on the host: the connection file, the ZeroMQ sockets and the
pip.conf, readable by the kernel's user only, and the connection info the container reads."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import socket
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from jupyter_client.connect import KernelConnectionInfo, LocalPortCache, port_names

__all__ = [
    "PrivateDir",
    "connection_for_container",
    "hand_to_user",
    "other_login_users",
    "point_at",
    "release_ports",
    "reserve_ports",
    "wait_for_port",
    "wait_for_sockets",
    "write_connection",
    "write_private",
]


@dataclass(frozen=True)
class PrivateDir:
    """The kernel's 0700 folder: connection file, ZeroMQ sockets, pip.conf.

    Its path is short on purpose (``/tmp/nbc-…``): Unix socket paths are limited to ~107 bytes.
    """

    path: Path

    @classmethod
    def open(cls, current: Path | None = None) -> PrivateDir:
        """``current`` again when it still exists (a restart keeps it), else a new folder."""
        if current is None or not current.is_dir():
            current = Path(tempfile.mkdtemp(prefix="nbc-"))  # mkdtemp makes it 0700
        private = cls(current)
        private.sockets.mkdir(mode=0o700, exist_ok=True)
        return private

    @property
    def connection_file(self) -> Path:
        return self.path / "kernel.json"

    @property
    def sockets(self) -> Path:
        return self.path / "s"

    @property
    def ipc_ip(self) -> str:
        """The ZeroMQ ipc "ip": each channel's socket is this path plus ``-<port>``."""
        return str(self.sockets / "k")

    @property
    def pip_conf(self) -> Path:
        return self.path / "pip.conf"


# Shells that mean "no login": such accounts (daemons) have no shell to read sockets from.
_NO_LOGIN = ("nologin", "false", "sync", "halt", "shutdown")


def other_login_users(uid: int | None = None) -> list[str]:
    """Accounts on this host, other than ``uid`` (default: ours), that a person can log in
    to: uid 1000 or above (not nobody) with a real shell. Anyone of them can reach a TCP
    port on 127.0.0.1."""
    import pwd

    uid = os.getuid() if uid is None else uid
    return sorted(
        entry.pw_name
        for entry in pwd.getpwall()
        if entry.pw_uid >= 1000
        and entry.pw_uid not in (uid, 65534)
        and not os.path.basename(entry.pw_shell or "/bin/sh").startswith(_NO_LOGIN)
    )


def write_private(path: Path, text: str) -> None:
    """Write ``path`` readable by its owner only, never briefly readable by others."""
    # The mode is set at creation: a write_text() then chmod() leaves a moment of 0644.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def hand_to_user(private: PrivateDir, user: str) -> None:
    """Give the folder and all it holds to ``user`` (uid:gid), so that the kernel's user, and
    nobody else, may read the connection key and use the sockets (a root server only)."""
    uid, gid = (int(part) for part in user.split(":"))
    for path in [private.path, *private.path.rglob("*")]:
        os.chown(path, uid, gid)


def reserve_ports(count: int = 5, ip: str = "127.0.0.1") -> list[int]:
    """Free ports for the tcp transport, held back from other kernels of this process."""
    # Jupyter's own cache: ports stay reserved between choosing them and the kernel binding.
    cache = LocalPortCache.instance()
    return [cache.find_available_port(ip) for _ in range(count)]


def release_ports(ports: Sequence[int]) -> None:
    cache = LocalPortCache.instance()
    for port in ports:
        cache.return_port(port)


def write_connection(
    km: Any,
    private: PrivateDir,
    transport: str,
    network: str,
    ports: Sequence[int] = (),
    session: str = "",
) -> KernelConnectionInfo:
    """Point the kernel manager ``km`` at the channels (sockets in ``private``, or ``ports``
    on 127.0.0.1), write its connection file and the container's copy; return the info."""
    if transport == "ipc":
        # A restart keeps the socket names, so connected clients find the new kernel.
        if km.transport != "ipc" or km.ip != private.ipc_ip:
            km.transport, km.ip = "ipc", private.ipc_ip
            km.shell_port = km.iopub_port = km.stdin_port = km.hb_port = km.control_port = 0
    else:
        # The server's side connects over loopback only; the engine publishes nowhere else.
        km.transport, km.ip = "tcp", "127.0.0.1"
        (km.shell_port, km.iopub_port, km.stdin_port, km.hb_port, km.control_port) = ports
    # The server's own file (in Jupyter's runtime dir) is what clients and `--existing` read;
    # the container gets a copy in the private folder, mounted read-only.
    km.write_connection_file(jupyter_session=session)
    info: KernelConnectionInfo = km.get_connection_info()
    inside = connection_for_container(info, transport, network)
    write_private(private.connection_file, json.dumps(inside))
    return info


def connection_for_container(
    info: Mapping[str, Any], transport: str, network: str
) -> dict[str, Any]:
    """The connection info as the kernel in the container reads it (JSON-ready)."""
    inside = {k: v.decode() if isinstance(v, bytes) else v for k, v in info.items()}
    if transport == "tcp":
        # In its own network namespace it listens on all of that namespace's interfaces and
        # the engine publishes the ports on 127.0.0.1 only; on the host network, loopback.
        inside["ip"] = "127.0.0.1" if network == "host" else "0.0.0.0"
    return inside


def point_at(
    km: Any, info: Mapping[str, Any], address: str, ports: Mapping[int, int]
) -> KernelConnectionInfo:
    """The server's connection info for a kernel another host runs: ``address`` (the node or
    pod) and, for each channel, the port that reaches the container's port there. The kernel
    manager ``km`` is pointed at them; Jupyter rewrites its connection file from the result."""
    moved: dict[str, Any] = dict(info)
    moved["ip"] = address
    for key in ("shell_port", "iopub_port", "stdin_port", "hb_port", "control_port"):
        moved[key] = ports.get(int(info[key]), int(info[key]))
        setattr(km, key, moved[key])
    km.ip = address
    return moved  # type: ignore[return-value]


# Connecting to these means the address can't be reached (a firewall, a wrong address); a
# refused connection only means the kernel has not bound its port yet.
_UNREACHABLE = (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ETIMEDOUT, errno.EHOSTDOWN)


async def wait_for_port(
    address: str, port: int, timeout: float, exited: Callable[[], Awaitable[bool]]
) -> Literal["open", "exited", "timeout", "unreachable"]:
    """Wait until a kernel on another host accepts TCP on ``address:port``, it has
    ``exited``, or ``timeout`` seconds have passed; "unreachable" when the network says no
    route (or stays silent) for 5 seconds."""
    silent_since: float | None = None

    async def attempt() -> Literal["open", "unreachable"] | None:
        nonlocal silent_since
        try:
            await asyncio.to_thread(socket.create_connection, (address, port), 1.0)
            return "open"
        except OSError as exc:
            now = time.monotonic()
            if isinstance(exc, TimeoutError) or exc.errno in _UNREACHABLE:
                silent_since = silent_since or now
                if now - silent_since > 5:
                    return "unreachable"
            else:
                silent_since = None
        return None

    return await _poll(attempt, timeout, exited, 0.02)


async def wait_for_sockets(
    info: Mapping[str, Any], timeout: float, exited: Callable[[], Awaitable[bool]]
) -> Literal["bound", "exited", "timeout"]:
    """Wait until the kernel has bound every ipc socket of ``info`` (their files appear the
    moment it binds), it has ``exited``, or ``timeout`` seconds have passed."""
    sockets = [f"{info['ip']}-{info[key]}" for key in port_names]

    async def attempt() -> Literal["bound"] | None:
        return "bound" if all(os.path.exists(s) for s in sockets) else None

    return await _poll(attempt, timeout, exited, 0.005)


_Found = TypeVar("_Found", bound=str)


async def _poll(
    attempt: Callable[[], Awaitable[_Found | None]],
    timeout: float,
    exited: Callable[[], Awaitable[bool]],
    interval: float,
) -> _Found | Literal["exited", "timeout"]:
    """Try ``attempt`` every ``interval`` s until it answers (not None), the kernel has
    ``exited`` or ``timeout`` s have passed. Asking the engine whether it exited costs a
    round trip: at most every half second, while the attempt itself is nearly free."""
    deadline = time.monotonic() + timeout
    next_check = time.monotonic() + 0.5
    while True:
        found = await attempt()
        if found is not None:
            return found
        now = time.monotonic()
        if now > deadline:
            return "timeout"
        if now > next_check:
            next_check = now + 0.5
            if await exited():
                return "exited"
        await asyncio.sleep(interval)
