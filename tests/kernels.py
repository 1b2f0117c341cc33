"""Small helpers to drive a real kernel from tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager


def run(kc: BlockingKernelClient, code: str, timeout: float = 60) -> tuple[str, dict[str, Any]]:
    """Execute ``code``; return (everything printed to stdout/stderr, the execute_reply content)."""
    out: list[str] = []

    def hook(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            out.append("\n".join(msg["content"]["traceback"]))

    reply = kc.execute_interactive(code, output_hook=hook, timeout=timeout)
    return "".join(out), reply["content"]


@contextmanager
def container_kernel(
    cwd: Path, kernel: str = "nbc-python", **config: Any
) -> Iterator[tuple[KernelManager, BlockingKernelClient]]:
    """Start ``kernel`` (with provisioner ``config`` on top of its kernelspec) in ``cwd``,
    wait until it answers, and shut it down afterwards whatever happens."""
    km = start(cwd, kernel, **config)
    kc = km.client()
    try:
        kc.start_channels()
        kc.wait_for_ready(timeout=60)
        yield km, kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def start(cwd: Path, kernel: str = "nbc-python", **config: Any) -> KernelManager:
    km = KernelManager(kernel_name=kernel)
    if config:
        km.kernel_spec.metadata["kernel_provisioner"]["config"].update(config)
    km.start_kernel(cwd=str(cwd))
    return km
