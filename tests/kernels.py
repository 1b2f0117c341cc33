"""Small helpers to drive a real kernel from tests."""

from __future__ import annotations

from typing import Any

from jupyter_client.blocking.client import BlockingKernelClient


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
