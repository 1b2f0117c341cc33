"""Kernels on the test swarm's worker, started the way Jupyter starts them."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from jupyter_client.manager import KernelManager
from traitlets.config import Config

from tests.swarmnet import ON_WORKER, SHARED


def start_kernel(placement: tuple[str, ...] = (ON_WORKER,), **settings: Any) -> KernelManager:
    """A started nbc-python kernel on runtime "swarm", its workspace on the shared folder."""
    config = Config()
    config.ContainerProvisioner.runtime_name = "swarm"
    config.ContainerProvisioner.placement = list(placement)
    for name, value in settings.items():
        setattr(config.ContainerProvisioner, name, value)
    workspace = SHARED / "workspace"
    workspace.mkdir(parents=True, exist_ok=True)
    km = KernelManager(kernel_name="nbc-python", config=config)
    try:
        km.start_kernel(cwd=str(workspace))
    except BaseException:
        km.cleanup_resources()
        raise
    return km


@contextmanager
def kernel(**settings: Any) -> Iterator[tuple[KernelManager, Any]]:
    km = start_kernel(**settings)
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        yield km, kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def run_cell(kc: Any, code: str, timeout: float = 30) -> tuple[str, str]:
    """(reply status, everything the cell printed)."""
    out: list[str] = []

    def output(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])

    reply = kc.execute_interactive(code, timeout=timeout, output_hook=output)
    return reply["content"]["status"], "".join(out)


class Capture:
    """Every frame crossing a bridge (an AF_PACKET socket as root), while it runs."""

    def __init__(self, interface: str = "docker0") -> None:
        self.data = bytearray()
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(0x0003))
        self._sock.bind((interface, 0))
        self._sock.settimeout(0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                self.data += self._sock.recv(65535)
            except TimeoutError:
                continue

    def stop(self) -> bytes:
        self._stop.set()
        self._thread.join()
        self._sock.close()
        return bytes(self.data)


__all__ = ["Capture", "Path", "kernel", "run_cell", "start_kernel"]
