"""Kernels on a real multi-node Docker Swarm (tests/swarmnet.py): placed on the worker by a
constraint, a cell runs, is interrupted, the kernel restarts and shuts down; a crash reports
its exit code; the traffic between the nodes is encrypted; `gc` sweeps a dead server's kernel
off the worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from nbcontainers.labels import KERNEL_ID
from tests.kernels.swarm_kernels import Capture, kernel, run_cell
from tests.swarmnet import SHARED, WORKER, on_worker

pytestmark = pytest.mark.docker


def test_a_kernel_on_a_worker_runs_is_interrupted_restarts_and_stops(swarm: object) -> None:
    with kernel() as (km, kc):
        prov = km.provisioner
        state = swarm.state(prov.container_id)  # type: ignore[attr-defined]
        assert state is not None and state.node == WORKER and state.running
        assert km.ip == state.address != "127.0.0.1"  # the server talks to the node
        assert km.curve_publickey is not None  # another host: Curve by default
        status, _out = run_cell(
            kc, "import socket, os; print(socket.gethostname()); open('from-swarm', 'w')"
        )
        assert status == "ok"
        assert (SHARED / "workspace" / "from-swarm").exists()  # the workspace is shared
        # Interrupt by message on the control channel: Swarm can't signal a task.
        msg_id = kc.execute("import time; time.sleep(60)")
        time.sleep(1.0)
        km.interrupt_kernel()
        reply = kc.get_shell_msg(timeout=20)
        assert reply["parent_header"]["msg_id"] == msg_id
        assert reply["content"]["ename"] == "KeyboardInterrupt"
        before = prov.container_id
        km.restart_kernel()
        kc.wait_for_ready(timeout=60)
        after = swarm.state(prov.container_id)  # type: ignore[attr-defined]
        assert prov.container_id != before and swarm.state(before) is None  # type: ignore[attr-defined]
        assert after is not None and after.node == WORKER  # back on its node: same address
        assert run_cell(kc, "print(6 * 7)") == ("ok", "42\n")
        service = prov.container_id
    assert swarm.state(service) is None  # type: ignore[attr-defined]
    assert swarm.list({KERNEL_ID: None}) == []  # type: ignore[attr-defined]
    (SHARED / "workspace" / "from-swarm").unlink()


def test_a_kernel_as_another_uid_reads_its_secret_connection_file(swarm: object) -> None:
    # The connection file reaches the node as a Swarm secret readable by the kernel's uid
    # only; the kernel works on its own 0600 copy (ipykernel rewrites it when it has Curve).
    with kernel(user="1000:1000") as (_km, kc):
        status, out = run_cell(
            kc,
            "import os; print(os.getuid(), oct(os.stat('/home/nbc/.kernel.json').st_mode & 0o777))",
        )
        assert (status, out) == ("ok", "1000 0o600\n")


def test_a_crashed_kernel_reports_its_exit_code(swarm: object) -> None:
    with kernel() as (km, kc):
        kc.execute("import os; os._exit(7)")
        deadline = time.monotonic() + 30
        while km.is_alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not km.is_alive()
        report = km.provisioner.last_crash  # type: ignore[union-attr]
        assert report is not None and "exited with code 7" in report


@pytest.mark.parametrize("encryption", ["auto", "none"])
def test_traffic_between_nodes_shows_no_cell_in_clear_text(swarm: object, encryption: str) -> None:
    marker = f"nbc-marker-{uuid.uuid4().hex}"
    with kernel(encryption=encryption) as (km, kc):
        capture = Capture("docker0")  # the bridge between this host and the worker node
        try:
            status, out = run_cell(kc, f"text = {marker!r}\nprint(text.upper(), text)")
        finally:
            frames = capture.stop()
        assert status == "ok" and marker in out  # the cell ran, its output came back
        assert len(frames) > 1000, "the capture saw no traffic"
        seen = marker.encode() in frames or marker.upper().encode() in frames
        if encryption == "none":
            assert km.curve_publickey is None
            assert seen, "control: without Curve the capture must show the cell"
        else:
            assert km.curve_publickey is not None
            assert not seen, "the cell crossed the network in clear text"


def test_gc_removes_what_a_killed_server_left_on_a_worker(swarm: object, tmp_path: Path) -> None:
    script = tmp_path / "server.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys, time
            sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
            from tests.kernels.swarm_kernels import start_kernel
            km = start_kernel()
            print(km.provisioner.container_id, flush=True)
            time.sleep(600)
            """
        )
    )
    server = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, text=True, cwd=tmp_path
    )
    assert server.stdout is not None
    orphan = server.stdout.readline().strip()
    os.kill(server.pid, signal.SIGKILL)  # the server dies: its kernel stays on the worker
    server.wait()
    state = swarm.state(orphan)  # type: ignore[attr-defined]
    assert state is not None and state.running and state.node == WORKER
    with kernel() as (km, _kc):  # a live server's kernel: gc must leave it alone
        live = km.provisioner.container_id  # type: ignore[union-attr]
        gc = subprocess.run(
            [str(Path(sys.executable).parent / "nbcontainers"), "gc", "--runtime", "swarm"],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert gc.returncode == 0, gc.stderr
        assert state.name in gc.stdout and "server is gone" in gc.stdout
        assert swarm.state(orphan) is None  # type: ignore[attr-defined]
        assert swarm.state(live) is not None  # type: ignore[attr-defined]
    # Swarm removes the task's container on the worker too.
    deadline = time.monotonic() + 30
    filters = f"label=io.nbcontainers.swarm-service={state.name}"
    while on_worker("docker", "ps", "-aq", "--filter", filters).stdout.strip():
        assert time.monotonic() < deadline, "the task's container stayed on the worker"
        time.sleep(0.5)
    secrets = subprocess.run(
        ["docker", "secret", "ls", "--format", "{{.Name}}"], capture_output=True, text=True
    ).stdout
    assert state.name not in secrets  # its connection file went with it
