"""The launcher's forwarders without an engine: a real local ipykernel on Unix sockets, a real
jupyter_client on the TCP ports of a connection file, every channel through the forwarders."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.connect import write_connection_file

from nbcontainers.launch.proxy import KERNEL_PORTS, Forwarder


@pytest.fixture
def forwarded(tmp_path: Path) -> Iterator[tuple[BlockingKernelClient, dict[str, Any]]]:
    """A local kernel on ipc sockets, reached through a Forwarder on tcp ports."""
    tcp_file, info = write_connection_file(str(tmp_path / "kernel-tcp.json"), ip="127.0.0.1")
    sockets = Path(tempfile.mkdtemp(prefix="nbc-t-"))  # short: Unix socket paths are limited
    ipc = {
        "transport": "ipc",
        "ip": str(sockets / "k"),
        **KERNEL_PORTS,
        "key": info["key"],
        "signature_scheme": info["signature_scheme"],
    }
    ipc_file = tmp_path / "kernel-ipc.json"
    ipc_file.write_text(json.dumps(ipc))
    kernel = subprocess.Popen([sys.executable, "-m", "ipykernel_launcher", "-f", str(ipc_file)])
    forwarder = Forwarder(info)
    forwarder.bind()
    forwarder.connect(ipc["ip"])
    kc = BlockingKernelClient(connection_file=tcp_file)
    kc.load_connection_file()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        yield kc, dict(info)
    finally:
        kc.stop_channels()
        kernel.kill()
        kernel.wait()
        forwarder.context.destroy(linger=0)


def test_shell_iopub_and_heartbeat_pass_through(
    forwarded: tuple[BlockingKernelClient, dict[str, Any]],
) -> None:
    kc, _ = forwarded
    out: list[str] = []
    reply = kc.execute_interactive(
        "print(6 * 7)",
        timeout=30,
        output_hook=lambda m: (
            out.append(m["content"].get("text", "")) if m["msg_type"] == "stream" else None
        ),
    )
    assert reply["content"]["status"] == "ok"
    assert "".join(out).strip() == "42"  # iopub reached the frontend
    assert kc.hb_channel.is_beating()  # heartbeat pings come back


def test_stdin_requests_reach_the_frontend_that_asked(
    forwarded: tuple[BlockingKernelClient, dict[str, Any]],
) -> None:
    """The kernel addresses input requests to the shell requester's identity on its stdin
    socket: it reaches the frontend only if both forwarders toward the kernel share one."""
    kc, _ = forwarded
    out: list[str] = []
    reply = kc.execute_interactive(
        "print('got', input('name? '))",
        timeout=30,
        allow_stdin=True,
        stdin_hook=lambda m: kc.input("ada"),
        output_hook=lambda m: (
            out.append(m["content"].get("text", "")) if m["msg_type"] == "stream" else None
        ),
    )
    assert reply["content"]["status"] == "ok"
    assert "got ada" in "".join(out)


def test_control_channel_interrupts_by_message(
    forwarded: tuple[BlockingKernelClient, dict[str, Any]],
) -> None:
    kc, _ = forwarded
    msg = kc.session.msg("kernel_info_request")
    kc.control_channel.send(msg)
    reply = kc.control_channel.get_msg(timeout=30)
    assert reply["parent_header"]["msg_id"] == msg["header"]["msg_id"]
    assert reply["content"]["status"] == "ok"


def test_a_wrong_key_is_still_refused_by_the_kernel(
    forwarded: tuple[BlockingKernelClient, dict[str, Any]], tmp_path: Path
) -> None:
    """The forwarders sign nothing and check nothing: the kernel's HMAC check still holds."""
    kc, info = forwarded
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps({**info, "key": "not-the-key"}))
    intruder = BlockingKernelClient(connection_file=str(forged))
    intruder.load_connection_file()
    intruder.start_channels()
    try:
        intruder.kernel_info()
        with pytest.raises(Exception):  # noqa: B017 - queue.Empty: no reply to a forged message
            intruder.get_shell_msg(timeout=3)
    finally:
        intruder.stop_channels()
    assert kc.execute_interactive("1", timeout=30)["content"]["status"] == "ok"
