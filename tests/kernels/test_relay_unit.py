"""The relay's kernel manager runs the kernelspec it is given, which no Jupyter path holds, on
sockets no other user can open; and the relay says when the notebook's own kernel publishes
where others can read."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.kernelspec import KernelSpec

import nbcontainers.relay.connection as relay_module
from nbcontainers.relay.kernel import Relay, exposure


class _Kernel:
    """Stands in for the notebook's ipykernel: the relay only logs through it here."""

    log: Any = None


def test_in_memory_kernelspec_is_the_one_started(tmp_path: Path) -> None:
    spec = KernelSpec(
        name="nbc-test-not-installed",
        display_name="in memory",
        language="python",
        argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
    )
    relay = Relay("mem", spec, _Kernel(), cwd=str(tmp_path), execution_count=lambda: 1)
    assert relay.km.kernel_spec is spec
    relay.start(timeout=60)
    try:
        assert relay.alive
    finally:
        relay.stop(now=True)
    assert not relay.alive


def test_a_plain_kernelspec_listens_on_ipc_in_a_private_folder(tmp_path: Path) -> None:
    """A relayed kernel's outputs on TCP 127.0.0.1 could be read by any user of the host: its
    sockets are files in a 0700 folder instead, removed with it."""
    spec = KernelSpec(
        name="nbc-test-ipc", display_name="ipc", language="python",
        argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
    )  # fmt: skip
    relay = Relay("ipc", spec, _Kernel(), cwd=str(tmp_path), execution_count=lambda: 1)
    folder = Path(relay.km.ip).parent.parent
    assert relay.km.transport == "ipc"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700 and folder.stat().st_uid == os.getuid()
    relay.start(timeout=60)
    try:
        sockets = sorted(p.name for p in Path(relay.km.ip).parent.iterdir())
        assert len(sockets) == 5, sockets  # shell, iopub, stdin, control, heartbeat
        assert relay.run_internal("x = 6 * 7", user_expressions={"x": "x"}) == {"x": 42}
    finally:
        relay.stop(now=True)
    assert not folder.exists()


class _App:
    def __init__(self, transport: str, ip: str) -> None:
        self.transport, self.ip = transport, ip


class _Local:
    def __init__(self, transport: str, ip: str) -> None:
        self.parent = _App(transport, ip)


def test_a_notebook_kernel_on_tcp_is_named_where_others_log_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(relay_module, "other_login_users", lambda: ["alice", "bob"])
    said = exposure(_Local("tcp", "127.0.0.1"))
    assert said is not None and "TCP 127.0.0.1 where 2 other user(s)" in said
    assert "c.KernelManager.transport = 'ipc'" in said
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    assert exposure(_Local("ipc", str(private / "kernel-1-ipc"))) is None
    private.chmod(0o755)
    said = exposure(_Local("ipc", str(private / "kernel-1-ipc")))
    assert said is not None and f"ipc sockets in {private}, a folder other users can open" in said
    monkeypatch.setattr(relay_module, "other_login_users", lambda: [])
    assert exposure(_Local("tcp", "127.0.0.1")) is None  # alone on the host: nothing to say
    assert exposure(object()) is None  # not an ipykernel from a connection file
