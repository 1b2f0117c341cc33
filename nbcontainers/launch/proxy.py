"""The frontend's TCP ports on 127.0.0.1 (or its ipc sockets), forwarded to the kernel's Unix
sockets, for the frontend's user only.

A launched kernel is the provisioner's default kernel: it joins its owner's shared network
namespace and binds Unix sockets in its private 0700 folder (no published ports, no
docker-proxy, and a warm-pool member can serve it). The frontend wrote a connection file with
five TCP ports on loopback, which any local user may open; what a kernel publishes on IOPub
is signed with the file's key but not encrypted, so whoever subscribes reads every output. A
frontend set to ipc names five socket paths instead (``<ip>-<port>``); the launcher makes
them, the user's only (0600), and checks each peer the same way.

- :class:`Relay` (a connection file without CurveZMQ keys, what every frontend writes): each
  port is a listening socket; a connection is accepted only from a socket of the launcher's
  own user (or root), its owner read from the host's TCP table or the Unix socket's
  credentials (:mod:`.peers`), and is then
  relayed byte for byte to the kernel's socket. ZeroMQ speaks the same ZMTP over TCP and Unix
  sockets, so the frontend talks to the kernel itself: each client is its own peer of the
  kernel, messages are signed by the frontend and checked by the kernel end to end. Another
  user's connection is closed before a byte reaches the kernel, and said on stderr.
- :class:`Forwarder` (a file with CurveZMQ keys): the TCP side is a Curve server with them, as
  the kernel itself would be, which authenticates every client by the file's keys; each
  channel is one libzmq proxy (``zmq.proxy``, in C) to the kernel's socket.

Either way the launcher holds no key and reads no message.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import ConfigError
from .peers import peer_uid

if TYPE_CHECKING:
    import zmq

__all__ = ["KERNEL_PORTS", "Forwarder", "Relay", "forwarder_for"]

# The kernel's socket names in its private folder (``<ip>-<n>``): fixed, so that two starts of
# one kernelspec look alike to the warm pool.
KERNEL_PORTS = {"shell_port": 1, "iopub_port": 2, "stdin_port": 3, "control_port": 4, "hb_port": 5}
# How often (ms) a forwarder tries the kernel's socket until it is bound: the kernel binds
# within a second of its start, and libzmq's default (100 ms) would add up to that to its
# first answer.
RECONNECT_MS = 5
# How long (s) a relayed connection waits for the kernel's socket before it is closed (the
# frontend connects again).
KERNEL_WAIT = 120.0
_CHUNK = 1 << 16


class Ports(Protocol):
    """What the launcher asks of either forwarder."""

    def bind(self) -> None: ...

    def connect(self, ipc_ip: str) -> None: ...

    def close(self) -> None: ...


def forwarder_for(info: Mapping[str, Any]) -> Ports:
    """The forwarder for a frontend's connection file ``info``: a :class:`Forwarder` where it
    carries CurveZMQ keys (which authenticate every client), else a :class:`Relay`."""
    return Forwarder(info) if info.get("curve_secretkey") else Relay(info)


def _cannot_bind(address: Any, exc: Exception) -> ConfigError:
    """What to tell the frontend when ``address`` (a port's (ip, n), or an ipc socket path)
    could not be listened on."""
    where = address if isinstance(address, str) else f"{address[0]}:{address[1]}"
    if getattr(exc, "errno", None) == errno.EADDRINUSE:
        taken = "that file exists" if isinstance(address, str) else "another process took it"
        return ConfigError(
            f"Cannot listen on the connection file's {where}: {taken}. Start the kernel again "
            "(the frontend picks new ports)."
        )
    reason = getattr(exc, "strerror", None) or str(exc)
    return ConfigError(f"Cannot listen on the connection file's {where}: {reason}.")


def _loopback(info: Mapping[str, Any]) -> str:
    return "127.0.0.1" if info["ip"] == "localhost" else str(info["ip"])


def _address(info: Mapping[str, Any], name: str) -> tuple[socket.AddressFamily, Any]:
    """Where the frontend connects for channel ``name``: a socket path for ipc (as ipykernel
    would bind it, relative to this working folder), else a port on the file's loopback ip."""
    if info.get("transport") == "ipc":
        return socket.AF_UNIX, f"{info['ip']}-{int(info[name])}"
    ip = _loopback(info)
    return (socket.AF_INET6 if ":" in ip else socket.AF_INET), (ip, int(info[name]))


@contextlib.contextmanager
def _private_files() -> Iterator[None]:
    """Files made meanwhile are the user's alone (0600): a socket file is made with that mode,
    with no moment open to others and no chmod through a name someone could swap."""
    old = os.umask(0o177)
    try:
        yield
    finally:
        os.umask(old)


def _unlink_all(paths: list[str]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            os.unlink(path)


def _remove_at_exit(paths: list[str]) -> None:
    """Remove the socket files this process made when it leaves (as ipykernel does its own)."""
    atexit.register(_unlink_all, paths)


class Relay:
    """The five ports of one kernel, each relayed to the kernel's socket for this user only:
    :meth:`bind` listens (and checks each connecting frontend at once), :meth:`connect` names
    the kernel's sockets once they are known; a frontend that connected before waits."""

    def __init__(self, info: Mapping[str, Any]) -> None:
        self.info = info
        self.allowed = {os.getuid(), 0}  # the user, and root (who can read the file anyway)
        self._ipc_ip = ""
        self._known = threading.Event()
        self._sockets: set[socket.socket] = set()  # listening and relayed, for close()
        self._paths: list[str] = []  # the ipc socket files made here

    def bind(self) -> None:
        listeners = []
        address: Any = None
        try:
            for name in KERNEL_PORTS:
                family, address = _address(self.info, name)
                listener = socket.socket(family, socket.SOCK_STREAM)
                listeners.append((name, listener))
                self._sockets.add(listener)
                if family == socket.AF_UNIX:
                    with _private_files():  # an existing name: EADDRINUSE, never replaced
                        listener.bind(address)
                    self._paths.append(address)
                else:
                    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    listener.bind(address)
                listener.listen(64)
        except OSError as exc:
            for _, listener in listeners:
                listener.close()
            _unlink_all(self._paths)
            raise _cannot_bind(address, exc) from None
        _remove_at_exit(self._paths)
        for name, listener in listeners:
            threading.Thread(
                target=self._accept, args=(name, listener), name="nbc-relay", daemon=True
            ).start()

    def connect(self, ipc_ip: str) -> None:
        self._ipc_ip = ipc_ip
        self._known.set()

    def close(self) -> None:
        """Stop listening and end every relayed connection (a process that goes on after
        its kernel: the tests; the launcher just exits)."""
        for sock in list(self._sockets):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        _unlink_all(self._paths)

    def _accept(self, name: str, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:  # the process is leaving
                return
            uid = peer_uid(conn)
            if uid not in self.allowed:
                who = f"uid {uid}" if uid is not None else "a socket of no local user"
                print(
                    f"nbcontainers: refused a connection to this kernel's {name} "
                    f"({self.info[name]}) from {who}: only uid {os.getuid()} may connect",
                    file=sys.stderr,
                    flush=True,
                )
                conn.close()  # after the line: whoever sees the close can read why
                continue
            if conn.family != socket.AF_UNIX:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sockets.add(conn)
            threading.Thread(
                target=self._serve, args=(name, conn), name="nbc-relay", daemon=True
            ).start()

    def _serve(self, name: str, conn: socket.socket) -> None:
        """Join ``conn`` to a new connection to the kernel's socket, both ways."""
        kernel = self._kernel_socket(name)
        if kernel is None:
            conn.close()
            return
        self._sockets.add(kernel)
        threading.Thread(target=_copy, args=(kernel, conn), name="nbc-relay", daemon=True).start()
        _copy(conn, kernel)
        self._sockets.difference_update((conn, kernel))

    def _kernel_socket(self, name: str) -> socket.socket | None:
        """A connection to the kernel's socket for ``name``, tried until it is bound."""
        deadline = time.monotonic() + KERNEL_WAIT
        if not self._known.wait(KERNEL_WAIT):
            return None
        path = f"{self._ipc_ip}-{KERNEL_PORTS[name]}"
        delay = RECONNECT_MS / 1000
        while time.monotonic() < deadline:
            kernel = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                kernel.connect(path)
                return kernel
            except OSError:
                kernel.close()
                time.sleep(delay)
                delay = min(delay * 2, 0.02)  # the kernel binds soon: keep trying often
        return None


class Forwarder:
    """The five forwarders of one kernel: :meth:`bind` the frontend's side, then
    :meth:`connect` to the kernel's sockets once they are known. Between the two a frontend
    may already connect and send: its messages wait in the bound sockets."""

    def __init__(self, info: Mapping[str, Any]) -> None:
        import zmq

        self.info = info
        self.context: zmq.Context[Any] = zmq.Context()
        self.fronts: dict[str, zmq.Socket[Any]] = {}
        self._paths: list[str] = []  # the ipc socket files made here

    def bind(self) -> None:
        """Bind the connection file's five TCP ports on its loopback ``ip`` (or its five ipc
        socket paths)."""
        import zmq

        info = self.info
        for name in KERNEL_PORTS:
            front = self.context.socket(zmq.XPUB if name == "iopub_port" else zmq.ROUTER)
            front.setsockopt(zmq.LINGER, 0)
            if name == "iopub_port":
                # Every subscription reaches the kernel, so each frontend gets its welcome.
                front.setsockopt(zmq.XPUB_VERBOSE, 1)
            if info.get("curve_secretkey"):
                front.curve_secretkey = _bytes(info["curve_secretkey"])
                front.curve_publickey = _bytes(info["curve_publickey"])
                front.curve_server = True
            family, address = _address(info, name)
            try:
                if family == socket.AF_UNIX:
                    if os.path.lexists(address):  # libzmq would replace it
                        raise zmq.ZMQError(errno.EADDRINUSE)
                    with _private_files():
                        front.bind(f"ipc://{address}")
                    self._paths.append(address)
                else:
                    front.bind(f"tcp://{address[0]}:{address[1]}")  # zmq binds addresses
            except zmq.ZMQError as exc:
                self.close()
                raise _cannot_bind(address, exc) from None
            self.fronts[name] = front
        _remove_at_exit(self._paths)

    def connect(self, ipc_ip: str) -> None:
        """Forward each bound port to the kernel's socket ``ipc://<ipc_ip>-<n>``, from daemon
        threads that live as long as the process."""
        import zmq

        # The kernel sends stdin requests to the shell requester's identity, on its stdin
        # socket: both forwarders toward it carry one identity (a frontend's two do already).
        identity = os.urandom(8)
        for name, n in KERNEL_PORTS.items():
            back = self.context.socket(zmq.XSUB if name == "iopub_port" else zmq.DEALER)
            back.setsockopt(zmq.LINGER, 0)
            if name in ("shell_port", "stdin_port"):
                back.setsockopt(zmq.IDENTITY, identity)
            back.setsockopt(zmq.RECONNECT_IVL, RECONNECT_MS)
            back.connect(f"ipc://{ipc_ip}-{n}")
            front = self.fronts[name]
            threading.Thread(
                target=_run, args=(front, back), name="nbc-forward", daemon=True
            ).start()

    def close(self) -> None:
        """End the proxies and unbind the ports (removing any socket files made here)."""
        self.context.destroy(linger=0)
        _unlink_all(self._paths)


def _run(front: Any, back: Any) -> None:
    import zmq

    with contextlib.suppress(zmq.ZMQError):  # the context ended: the launcher is leaving
        zmq.proxy(front, back)


def _copy(source: socket.socket, target: socket.socket) -> None:
    """Bytes from ``source`` to ``target`` until either end closes; then both close (the
    other direction's thread sees its socket shut and ends too)."""
    try:
        while data := source.recv(_CHUNK):
            target.sendall(data)
    except OSError:
        pass
    finally:
        for end in (source, target):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
        source.close()


def _bytes(value: Any) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)
