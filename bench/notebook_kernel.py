"""A local notebook kernel for the benchmarks that drive `%container` as a user would."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from jupyter_client.manager import KernelManager


@contextmanager
def local_kernel(cwd: str) -> Iterator[Any]:
    """A started ipykernel in ``cwd``; yields its client, shuts it down afterwards."""
    km = KernelManager(kernel_name="python3")
    km.start_kernel(cwd=cwd)
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        yield kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def printed(kc: Any, code: str, timeout: float = 900) -> str:
    """Run ``code``; fail unless it succeeds; return what it printed."""
    out: list[str] = []
    reply = kc.execute_interactive(
        code,
        timeout=timeout,
        output_hook=lambda m: (
            out.append(m["content"].get("text", "")) if m["msg_type"] == "stream" else None
        ),
    )
    assert reply["content"]["status"] == "ok", reply["content"]
    return "".join(out)
