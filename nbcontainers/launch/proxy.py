"""The frontend's TCP ports on 127.0.0.1, forwarded to the kernel's Unix sockets.

A launched kernel is the provisioner's default kernel: it joins its owner's shared network
namespace and binds Unix sockets in its private 0700 folder (no published ports, no
docker-proxy, and a warm-pool member can serve it). The frontend wrote a connection file with
five TCP ports on loopback; the launcher binds them and forwards every frame unchanged, from
one libzmq proxy per channel (``zmq.proxy`` runs in C, without the GIL). Messages are signed
by the frontend and checked by the kernel with the file's key, end to end: the launcher holds
no key and reads no message. When the frontend's file carries CurveZMQ keys, the TCP side is
a Curve server with them, as the kernel itself would be.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Mapping
from typing import Any

import zmq

__all__ = ["KERNEL_PORTS", "Forwarder"]

# The kernel's socket names in its private folder (``<ip>-<n>``): fixed, so that two starts of
# one kernelspec look alike to the warm pool.
KERNEL_PORTS = {"shell_port": 1, "iopub_port": 2, "stdin_port": 3, "control_port": 4, "hb_port": 5}
# How often (ms) a forwarder tries the kernel's socket until it is bound: the kernel binds
# within a second of its start, and libzmq's default (100 ms) would add up to that to its
# first answer.
RECONNECT_MS = 5


class Forwarder:
    """The five forwarders of one kernel: :meth:`bind` the frontend's side, then
    :meth:`connect` to the kernel's sockets once they are known. Between the two a frontend
    may already connect and send: its messages wait in the bound sockets."""

    def __init__(self, info: Mapping[str, Any]) -> None:
        self.info = info
        self.context: zmq.Context[Any] = zmq.Context()
        self.fronts: dict[str, zmq.Socket[Any]] = {}

    def bind(self) -> None:
        """Bind the connection file's five TCP ports on its loopback ``ip``."""
        info = self.info
        ip = "127.0.0.1" if info["ip"] == "localhost" else info["ip"]  # zmq binds addresses
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
            front.bind(f"tcp://{ip}:{int(info[name])}")
            self.fronts[name] = front

    def connect(self, ipc_ip: str) -> None:
        """Forward each bound port to the kernel's socket ``ipc://<ipc_ip>-<n>``, from daemon
        threads that live as long as the process."""
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


def _run(front: zmq.Socket[Any], back: zmq.Socket[Any]) -> None:
    with contextlib.suppress(zmq.ZMQError):  # the context ended: the launcher is leaving
        zmq.proxy(front, back)


def _bytes(value: Any) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)
