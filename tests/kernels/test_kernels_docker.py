"""Container kernels on a real Docker engine: launch, workspace, safety, interrupt, restart,
crash reports, shutdown and re-adoption."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.manager import KernelManager

from nbcontainers.labels import KERNEL_ID, OWNER, SERVER_PID

from ..drive import connected, container_kernel, run, start

pytestmark = pytest.mark.docker


@pytest.fixture
def km(python_image: str, tmp_path: Path) -> Iterator[KernelManager]:
    manager = start(tmp_path)
    yield manager
    if manager.has_kernel:
        manager.shutdown_kernel(now=True)


@pytest.fixture
def kc(km: KernelManager) -> Iterator[Any]:
    with connected(km) as client:
        yield client


def _inspect(runtime: Any, km: KernelManager) -> dict[str, Any]:
    return dict(runtime.api.inspect_container(km.provisioner.container_id))


def test_executes_in_container_with_workspace_and_host_uid(
    km: KernelManager, kc: Any, tmp_path: Path
) -> None:
    out, reply = run(
        kc,
        "import os, sys; print(os.getcwd(), os.getuid(), os.getgid(), "
        "os.environ['HOME'], os.path.exists('/.dockerenv'))\n"
        "open('written.txt', 'w').write('hi')",
    )
    assert reply["status"] == "ok", out
    cwd, uid, gid, home, in_container = out.split()
    assert cwd == str(tmp_path)
    assert (int(uid), int(gid)) == (os.getuid(), os.getgid())
    # ~ is the server user's home path, backed by a lasting folder (kernels/home.py).
    assert home == str(Path.home()) and in_container == "True"
    written = tmp_path / "written.txt"
    assert written.read_text() == "hi"
    assert written.stat().st_uid == os.getuid()
    out, reply = run(
        kc,
        "import pathlib; p = pathlib.Path.home() / 'x'; p.write_text('ok'); print(p.read_text())",
    )
    assert out.strip() == "ok", out


def test_security_settings(km: KernelManager, kc: Any, runtime: Any) -> None:
    data = _inspect(runtime, km)
    host = data["HostConfig"]
    assert host["Privileged"] is False
    assert host["CapDrop"] == ["ALL"]
    assert "no-new-privileges" in host["SecurityOpt"]
    assert host["Init"] is True
    assert host["ShmSize"] >= 1 << 30
    assert not host.get("PortBindings")  # ipc transport: no TCP port at all
    sources = [m["Source"] for m in data["Mounts"]]
    assert not any("docker.sock" in s for s in sources)
    labels = data["Config"]["Labels"]
    assert labels[KERNEL_ID] == km.kernel_id and labels[OWNER] and labels[SERVER_PID]
    # Connection file: private, signed with a real key.
    info = json.loads(Path(km.provisioner.private_dir, "kernel.json").read_text())
    mode = Path(km.provisioner.private_dir, "kernel.json").stat().st_mode
    assert stat.S_IMODE(mode) == 0o600
    assert stat.S_IMODE(Path(km.provisioner.private_dir).stat().st_mode) == 0o700
    assert info["key"] and info["signature_scheme"] == "hmac-sha256"
    assert info["transport"] == "ipc"
    out, _ = run(kc, "import os; print(os.path.exists('/var/run/docker.sock'))")
    assert out.strip() == "False"


def test_environment_is_an_allowlist(
    python_image: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "hub-secret-token-123")
    monkeypatch.setenv("LANG", "C.UTF-8")
    with container_kernel(tmp_path, env={"MY_SETTING": "42"}) as (_km, kc):
        out, _ = run(
            kc,
            "import os; print(sorted(os.environ))\n"
            "print(os.environ.get('JUPYTERHUB_API_TOKEN'), os.environ['LANG'], "
            "os.environ['MY_SETTING'])",
        )
        assert "None C.UTF-8 42" in out
        assert "hub-secret-token-123" not in out


def test_tcp_transport_binds_loopback_only(python_image: str, tmp_path: Path, runtime: Any) -> None:
    with container_kernel(tmp_path, transport="tcp") as (km, kc):
        out, _ = run(kc, "print(6 * 7)")
        assert out.strip() == "42"
        bindings = _inspect(runtime, km)["HostConfig"]["PortBindings"]
        assert len(bindings) == 5
        assert {b[0]["HostIp"] for b in bindings.values()} == {"127.0.0.1"}
        assert km.get_connection_info()["ip"] == "127.0.0.1"


def test_interrupt_stops_a_long_cell_quickly(km: KernelManager, kc: Any) -> None:
    msg_id = kc.execute("import time; time.sleep(600)")
    time.sleep(1.0)  # let it start sleeping
    started = time.monotonic()
    km.interrupt_kernel()
    reply = kc.get_shell_msg(timeout=10)
    elapsed = time.monotonic() - started
    assert reply["parent_header"]["msg_id"] == msg_id
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    assert elapsed < 2.0, f"interrupt took {elapsed:.2f} s"
    out, reply = run(kc, "print('still usable')")
    assert out.strip() == "still usable"


def test_interrupt_by_signal_also_works(python_image: str, tmp_path: Path) -> None:
    km = KernelManager(kernel_name="nbc-python")
    km.kernel_spec.interrupt_mode = "signal"
    km.start_kernel(cwd=str(tmp_path))
    try:
        with connected(km) as kc:
            kc.execute("import time; time.sleep(600)")
            time.sleep(1.0)
            km.interrupt_kernel()
            reply = kc.get_shell_msg(timeout=5)
            assert reply["content"]["ename"] == "KeyboardInterrupt"
    finally:
        km.shutdown_kernel(now=True)


def test_restart_gives_a_fresh_kernel_and_shutdown_removes_container(
    km: KernelManager, kc: Any, runtime: Any
) -> None:
    run(kc, "marker = 123")
    first = km.provisioner.container_id
    km.restart_kernel(now=True)
    kc.wait_for_ready(timeout=60)
    second = km.provisioner.container_id
    assert second != first
    assert runtime.state(first) is None  # the old container is gone
    out, _ = run(kc, "print('marker' in globals())")
    assert out.strip() == "False"
    private = Path(km.provisioner.private_dir)
    km.shutdown_kernel(now=False)
    assert runtime.state(second) is None
    assert not private.exists()


def _wait_dead(km: KernelManager, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while km.is_alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not km.is_alive()


def test_crash_at_startup_reports_exit_code_and_log_tail(
    python_image: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    km = KernelManager(kernel_name="nbc-python")
    km.kernel_spec.argv = [
        "python3",
        "-c",
        "import sys; print('last words', file=sys.stderr); sys.exit(3)",
    ]
    km.start_kernel(cwd=str(tmp_path))
    try:
        _wait_dead(km)
        report = km.provisioner.last_crash or ""
        assert "exited with code 3" in report and "OOM-killed: no" in report
        assert "last words" in report
        assert "last words" in caplog.text  # and it reached the server log
    finally:
        km.shutdown_kernel(now=True)


def test_segfault_in_a_cell_is_reported(km: KernelManager, kc: Any) -> None:
    kc.execute("import ctypes; ctypes.string_at(0)")
    _wait_dead(km)
    report = km.provisioner.last_crash or ""
    assert "exited with code 139 (killed by SIGSEGV)" in report


def test_oom_kill_is_reported(python_image: str, tmp_path: Path) -> None:
    with container_kernel(tmp_path, mem_limit="96m") as (km, kc):
        kc.execute("blocks = [bytearray(16 << 20) for _ in range(64)]")
        _wait_dead(km)
        report = km.provisioner.last_crash or ""
        assert "out of memory" in report and "96m" in report, report


def test_readopt_running_kernel_from_saved_info(km: KernelManager, kc: Any) -> None:
    run(kc, "survivor = 'still here'")
    info = asyncio.run(km.provisioner.get_provisioner_info())
    # A "restarted server": a new manager and provisioner that only know the saved info.
    fresh = KernelManager(kernel_name="nbc-python")
    fresh.load_connection_info(info["connection_info"])
    from jupyter_client.provisioning import KernelProvisionerFactory

    fresh.provisioner = KernelProvisionerFactory.instance().create_provisioner_instance(
        km.kernel_id, fresh.kernel_spec, parent=fresh
    )
    asyncio.run(fresh.provisioner.load_provisioner_info(info))
    assert fresh.is_alive()
    with connected(fresh, timeout=30) as client:
        out, _ = run(client, "print(survivor)")
    assert out.strip() == "still here"


def test_kernels_share_one_network_holder_and_gc_removes_it(
    python_image: str, tmp_path: Path, runtime: Any
) -> None:
    from nbcontainers.kernels.orphans import find_orphans

    first, second = start(tmp_path), start(tmp_path)
    try:
        modes = {_inspect(runtime, k)["HostConfig"]["NetworkMode"] for k in (first, second)}
        assert len(modes) == 1
        mode = modes.pop()
        assert mode.startswith("container:")
        holder = runtime.state(mode.split(":", 1)[1])
        assert holder.status == "running" and holder.name.startswith("nbc-netns-")
        holder_data = runtime.api.inspect_container(holder.id)
        assert holder_data["HostConfig"]["NetworkMode"] == "bridge"
        assert not holder_data["HostConfig"]["PortBindings"]
        with connected(first) as client:
            out, _ = run(client, "import socket; print(socket.gethostbyname('localhost'))")
        assert out.strip() == "127.0.0.1"
        assert all(o.container.id != holder.id for o in find_orphans(runtime))
    finally:
        first.shutdown_kernel(now=True)
        second.shutdown_kernel(now=True)
    orphans = [o.container.id for o in find_orphans(runtime)]
    assert holder.id in orphans


def test_runs_as_a_non_root_user_and_files_belong_to_it(python_image: str, tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    os.chown(workspace, 12345, 12345)
    with container_kernel(workspace, user="12345:12345") as (_km, kc):
        out, reply = run(kc, "import os; open('mine.txt', 'w').write('x'); print(os.getuid())")
        assert reply["status"] == "ok", out
        assert out.strip() == "12345"
        assert (workspace / "mine.txt").stat().st_uid == 12345


def test_missing_image_can_be_built_at_start(
    python_image: str,
    tmp_path: Path,
    runtime: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from nbcontainers.catalog.entries import load_catalog

    source = tmp_path / "derived"
    source.mkdir()
    marker = uuid.uuid4().hex
    (source / "Dockerfile").write_text(
        f"ARG BASE_IMAGE={load_catalog()['python'].ref}\nFROM ${{BASE_IMAGE}}\n"
        f'LABEL io.nbcontainers.test-marker="{marker}"\n'
    )
    config = tmp_path / "config"
    config.mkdir()
    (config / "images.json").write_text(json.dumps({"images": {"derived": {"build": str(source)}}}))
    monkeypatch.setenv("NBCONTAINERS_CONFIG_DIR", str(config))
    ref = load_catalog()["derived"].ref
    caplog.set_level(logging.INFO, logger="traitlets")
    try:
        with container_kernel(tmp_path, image="derived", missing_image="build") as (_km, kc):
            out, _ = run(kc, "print('derived ok')")
            assert out.strip() == "derived ok"
            # Build progress went to the server log: its steps, then how long it took.
            assert f"Building {ref}: step 1/" in caplog.text
            assert f"Image {ref} is ready after" in caplog.text
    finally:
        runtime.api.remove_image(ref, force=True)
