"""The kernelspec's plain argv, started by jupyter_client's LocalProvisioner (what VS Code,
Zed and nteract do), against the real Docker engine: the container kernel, never the host's."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager

from nbcontainers.kernels.plan import IMAGE_LABEL
from nbcontainers.labels import KERNEL_ID, SERVER_PID

from .plain import plain_kernel_manager
from .snoop import NOBODY, as_root, snoop

pytestmark = pytest.mark.docker


def _run(kc: BlockingKernelClient, code: str) -> str:
    out: list[str] = []
    reply = kc.execute_interactive(
        code,
        timeout=60,
        output_hook=lambda m: (
            out.append(m["content"].get("text", "")) if m["msg_type"] == "stream" else None
        ),
    )
    assert reply["content"]["status"] == "ok", reply["content"]
    return "".join(out).strip()


def _containers(runtime: Any, km: KernelManager) -> list[Any]:
    """The kernel's containers: the provisioner labels them with the kernel's id, the
    launcher with the id in its connection file's name (kernel-ID.json)."""
    launched = Path(km.connection_file).stem.removeprefix("kernel-")
    kernel_id = (
        km.kernel_id if type(km.provisioner).__name__ == "ContainerProvisioner" else launched
    )
    return list(runtime.list({KERNEL_ID: kernel_id}))


def _shut_down(km: KernelManager, runtime: Any) -> None:
    """Shut down as a frontend does (a shutdown request; SIGKILL only if it hangs), then wait
    for the container to go: after a SIGKILL the reaper removes it within a second or so."""
    ids = {s.id for s in _containers(runtime, km)} if km.has_kernel else set()
    if km.has_kernel:
        km.shutdown_kernel()
    deadline = time.monotonic() + 15
    while any(runtime.state(i) for i in ids) and time.monotonic() < deadline:
        time.sleep(0.1)


@pytest.fixture
def plain(
    python_image: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[KernelManager, Path]]:
    """A started plain-argv kernel (its client on ``km.kc``) in the notebook folder ``work``."""
    work = tmp_path / "notebooks"
    work.mkdir()
    km = plain_kernel_manager(tmp_path / "kernels")
    km.start_kernel(cwd=str(work))
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    km.kc = kc  # type: ignore[attr-defined]
    yield km, work
    kc.stop_channels()
    _shut_down(km, request.getfixturevalue("runtime"))


def test_plain_argv_runs_in_a_labelled_container(
    runtime: Any, plain: tuple[KernelManager, Path]
) -> None:
    km, work = plain
    assert type(km.provisioner).__name__ == "LocalProvisioner"  # the argv ran, no provisioner
    said = _run(
        km.kc,  # type: ignore[attr-defined]
        "import os, socket\nopen('made-inside.txt', 'w').write('x')\n"
        "print(socket.gethostname(), os.getcwd(), os.getuid(), os.getgid(), "
        "os.environ['NBCONTAINERS_IMAGE'])",
    )
    hostname, cwd, uid, gid, image = said.split()
    # Before the launcher this printed the host's name: the kernel ran on the host.
    assert hostname != socket.gethostname()
    assert cwd == str(work.resolve()) and image == "python"
    assert (int(uid), int(gid)) == (os.getuid(), os.getgid())
    made = work / "made-inside.txt"  # the folder is mounted at the same path
    assert made.read_text() == "x" and made.stat().st_uid == os.getuid()
    (state,) = _containers(runtime, km)
    assert state.running  # its hostname is its network holder's (the shared namespace)
    labels = runtime.api.inspect_container(state.id)["Config"]["Labels"]
    assert labels[IMAGE_LABEL] == "python"
    # gc's backstop: the start service that holds it (and removes it with its launcher).
    service = Path("/proc", labels[SERVER_PID], "cmdline").read_bytes()
    assert b"nbcontainers.launch.service\0" in service
    km.shutdown_kernel()
    assert _containers(runtime, km) == []  # shutdown removes it


@as_root
def test_another_local_user_reads_no_output_of_a_launched_kernel(
    plain: tuple[KernelManager, Path],
) -> None:
    """The launcher's ports are on 127.0.0.1, open to every local user; a subscriber of
    another user (nobody) reads nothing while the kernel prints a secret, and the same
    subscriber run by the kernel's user reads it (so the attack is a real one). On the old
    forwarder nobody read every output."""
    km, _ = plain
    info = json.loads(Path(km.connection_file).read_text())
    secret = f"secret-{os.urandom(8).hex()}"
    stolen = snoop(info, NOBODY, km.kc, secret)  # type: ignore[attr-defined]
    assert stolen.startswith("GOT 0") and secret not in stolen, stolen
    assert secret in snoop(info, os.getuid(), km.kc, secret)  # type: ignore[attr-defined]
    assert _run(km.kc, "print(6 * 7)") == "42"  # type: ignore[attr-defined]


def test_a_frontend_on_ipc_gets_the_container_kernel_on_its_own_sockets(
    runtime: Any, python_image: str, tmp_path: Path
) -> None:
    """A frontend set to ipc (``KernelManager.transport = "ipc"``) names socket paths instead of
    ports: the launcher makes them, the user's only, and removes them when the kernel ends.
    Before, such a connection file was refused."""
    work = tmp_path / "notebooks"
    work.mkdir()
    km = plain_kernel_manager(tmp_path / "kernels")
    km.transport = "ipc"
    # Absolute: a relative path is the kernel's working folder's for the kernel and the
    # frontend's for the frontend (jupyter_client's default "kernel-ipc" works only where
    # both are one), with a plain ipykernel as through the launcher.
    km.ip = str(tmp_path / "kernel-ipc")
    km.start_kernel(cwd=str(work))
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        info = json.loads(Path(km.connection_file).read_text())
        assert info["transport"] == "ipc"
        paths = [Path(f"{info['ip']}-{info[name]}") for name in info if name.endswith("_port")]
        assert len(paths) == 5 and all(p.is_socket() for p in paths)
        assert {p.stat().st_mode & 0o777 for p in paths} == {0o600}
        assert _run(kc, "import socket; print(socket.gethostname())") != socket.gethostname()
        assert len(_containers(runtime, km)) == 1
    finally:
        kc.stop_channels()
        _shut_down(km, runtime)
    assert _containers(runtime, km) == []
    assert not any(p.exists() for p in paths)  # the launcher removed its sockets


@pytest.mark.parametrize("mode", ["message", "signal"])
@pytest.mark.parametrize("door", ["launcher", "provisioner"])
def test_interrupt_stops_a_running_cell(
    runtime: Any, python_image: str, tmp_path: Path, door: str, mode: str
) -> None:
    if door == "launcher":
        km = plain_kernel_manager(tmp_path, interrupt_mode=mode)
    else:
        km = KernelManager(kernel_name="nbc-python")
        km.kernel_spec.interrupt_mode = mode
    km.start_kernel(cwd=str(tmp_path))
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        msg_id = kc.execute("import time\nfor _ in range(60): time.sleep(1)")
        while True:  # the cell runs
            msg = kc.get_iopub_msg(timeout=30)
            if msg["msg_type"] == "execute_input":
                break
        time.sleep(0.5)
        t0 = time.monotonic()
        km.interrupt_kernel()
        reply = kc.get_shell_msg(timeout=20)
        while reply["parent_header"]["msg_id"] != msg_id:  # wait_for_ready's kernel_info
            reply = kc.get_shell_msg(timeout=20)
        assert reply["content"]["ename"] == "KeyboardInterrupt", reply["content"]
        assert time.monotonic() - t0 < 10
        assert _run(kc, "print(6 * 7)") == "42"  # the kernel lives on
    finally:
        kc.stop_channels()
        _shut_down(km, runtime)


def test_restart_gives_a_fresh_container(runtime: Any, plain: tuple[KernelManager, Path]) -> None:
    km, _ = plain
    (before,) = _containers(runtime, km)
    _run(km.kc, "x = 1")  # type: ignore[attr-defined]
    km.restart_kernel()
    km.kc.wait_for_ready(timeout=60)  # type: ignore[attr-defined]
    assert "NameError" in str(
        km.kc.execute_interactive("x", timeout=30)["content"]  # type: ignore[attr-defined]
    )
    (after,) = _containers(runtime, km)
    assert after.id != before.id and runtime.state(before.id) is None


def test_sigkill_of_the_launcher_takes_the_container(
    runtime: Any, plain: tuple[KernelManager, Path]
) -> None:
    km, _ = plain
    assert len(_containers(runtime, km)) == 1
    launcher = km.provisioner.process.pid  # type: ignore[union-attr]
    os.killpg(launcher, signal.SIGKILL)  # the whole group, as a frontend's kill does
    t0 = time.monotonic()
    while _containers(runtime, km) and time.monotonic() - t0 < 60:
        time.sleep(0.2)
    assert _containers(runtime, km) == [], "the container outlived its launcher by 60 s"
    print(f"container gone {time.monotonic() - t0:.2f} s after SIGKILL of the launcher")
    km.shutdown_kernel(now=True)  # collects the dead launcher


def test_engine_down_is_an_error_and_no_host_kernel(python_image: str, tmp_path: Path) -> None:
    from jupyter_client.connect import write_connection_file

    conn, info = write_connection_file(str(tmp_path / "kernel-x.json"))
    spec = json.loads(
        (
            Path(plain_kernel_manager(tmp_path / "k").kernel_spec.resource_dir) / "kernel.json"
        ).read_text()
    )
    argv = [sys.executable if a == "python3" else a for a in spec["argv"][:1]] + spec["argv"][1:]
    argv = [a.replace("{connection_file}", conn) for a in argv]
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/dead.sock"}
    t0 = time.monotonic()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode != 0
    assert done.stderr.startswith("Error: ") and "dead.sock" in done.stderr, done.stderr
    assert time.monotonic() - t0 < 30
    # No kernel anywhere: nothing listens on the connection file's ports.
    for key in ("shell_port", "hb_port"):
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", int(info[key]))) != 0


def test_absent_image_is_an_error_and_no_host_kernel(
    runtime: Any, python_image: str, tmp_path: Path
) -> None:
    from jupyter_client.connect import write_connection_file

    config = tmp_path / "config"
    config.mkdir()
    ref = "nbcontainers-test/never-built:none"
    (config / "images.json").write_text(json.dumps({"images": {"ghost": {"ref": ref}}}))
    assert runtime.image_info(ref) is None
    conn, info = write_connection_file(str(tmp_path / "kernel-ghost.json"))
    argv = [sys.executable, "-m", "nbcontainers.launch", "--kernel", "nbc-ghost", "--image"]
    argv += ["ghost", "-f", conn, "--", "python3", "-m", "ipykernel_launcher", "-f", conn]
    env = {**os.environ, "NBCONTAINERS_CONFIG_DIR": str(config)}
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 4, done.stderr  # ImageMissing's exit code
    assert done.stderr.startswith("Error: ") and ref in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    with socket.socket() as s:  # and no kernel listens anywhere
        assert s.connect_ex(("127.0.0.1", int(info["shell_port"]))) != 0


def test_the_provisioner_still_starts_one_container_and_no_launcher(
    runtime: Any, python_image: str, tmp_path: Path
) -> None:
    """Where Jupyter reads the provisioner (Jupyter Server, nbclient, papermill, console),
    argv's launcher never runs: one container per kernel, not two."""
    km = KernelManager(kernel_name="nbc-python")
    km.start_kernel(cwd=str(tmp_path))
    try:
        assert type(km.provisioner).__name__ == "ContainerProvisioner"
        assert len(_containers(runtime, km)) == 1
        assert not _launchers()
        state = runtime.api.inspect_container(_containers(runtime, km)[0].id)
        assert "nbcontainers.launch" not in state["Config"]["Cmd"]
    finally:
        _shut_down(km, runtime)


def test_jupyter_console_uses_the_provisioner(
    runtime: Any, python_image: str, tmp_path: Path
) -> None:
    bin_dir = Path(sys.executable).parent
    console = subprocess.Popen(
        [str(bin_dir / "jupyter"), "console", "--kernel", "nbc-python", "--simple-prompt"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )
    seen: set[str] = set()
    launchers = False
    assert console.stdin is not None
    console.stdin.write("import time; time.sleep(4); print('slept')\n")
    console.stdin.flush()
    t0 = time.monotonic()
    while time.monotonic() - t0 < 8:  # while the cell runs
        seen |= {s.id for s in runtime.list({KERNEL_ID: None}) if s.running}
        launchers = launchers or bool(_launchers())
        time.sleep(0.3)
    out, _ = console.communicate("exit\n", timeout=60)
    assert "slept" in out, out
    assert len(seen) == 1 and not launchers


def _launchers() -> list[int]:
    """Processes running the launcher on this host."""
    found = []
    for pid in os.listdir("/proc"):
        try:
            cmdline = Path("/proc", pid, "cmdline").read_bytes()
        except OSError:
            continue
        if pid.isdigit() and b"nbcontainers.launch\0" in cmdline:
            found.append(int(pid))
    return found


def test_nbc_notebook_starts_what_the_notebook_declares(
    runtime: Any, python_image: str, tmp_path: Path
) -> None:
    notebook = tmp_path / "analysis.ipynb"
    nb = nbformat.v4.new_notebook()
    nb.metadata["nbcontainers"] = {"image": "python"}
    nbformat.write(nb, notebook)
    km = plain_kernel_manager(tmp_path / "kernels", "nbc-notebook")
    km.start_kernel(cwd=str(tmp_path), env={**os.environ, "JPY_SESSION_NAME": str(notebook)})
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        said = _run(
            kc, "import os, socket; print(os.environ['NBCONTAINERS_IMAGE'], socket.gethostname())"
        )
        image, hostname = said.split()
        assert image == "python" and hostname != socket.gethostname()
    finally:
        kc.stop_channels()
        _shut_down(km, runtime)


def _service_of(runtime: Any, container_id: str) -> int:
    labels = runtime.api.inspect_container(container_id)["Config"]["Labels"]
    return int(labels[SERVER_PID])


def _stop_service(pid: int) -> None:
    """End a start service as a logout does: its kernels and idle pool members go with it."""
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while Path("/proc", str(pid)).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path("/proc", str(pid)).exists(), "the start service did not leave"


def test_config_files_and_the_warm_pool_apply_under_the_launcher(
    runtime: Any, python_image: str, tmp_path: Path
) -> None:
    """c.ContainerProvisioner.* in jupyter_server_config reaches a launched kernel (a memory
    limit), and with pool_size the second kernel is a pooled container, as under a server."""
    from nbcontainers.kernels.pooled import POOL_ROLE, reader_waiting
    from nbcontainers.labels import PRIVATE_DIR, ROLE

    config = tmp_path / "jupyter-config"
    config.mkdir()
    work = tmp_path / "notebooks"
    work.mkdir()
    settings = {"pool_size": 1, "mem_limit": "300m", "workspace_root": str(work)}
    (config / "jupyter_server_config.json").write_text(
        json.dumps({"ContainerProvisioner": settings})
    )
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(config)}
    kernels = tmp_path / "kernels"
    service = 0
    try:
        first = plain_kernel_manager(kernels)
        first.start_kernel(cwd=str(work), env=env)
        kc = first.client()
        kc.start_channels()
        kc.wait_for_ready(timeout=60)
        (cold,) = _containers(runtime, first)
        service = _service_of(runtime, cold.id)
        host = runtime.api.inspect_container(cold.id)["HostConfig"]
        assert host["Memory"] == 300 * 2**20  # from the config file, as the provisioner reads it
        assert cold.labels.get(ROLE) != POOL_ROLE  # the first start is cold: the pool learns
        kc.stop_channels()
        # The service now keeps one member like it ready (its launcher waits on the FIFO).
        deadline = time.monotonic() + 60
        members: list[Any] = []
        while time.monotonic() < deadline:
            members = [
                m
                for m in runtime.list({ROLE: POOL_ROLE})
                if m.running and m.labels.get(SERVER_PID) == str(service)
            ]
            if members and reader_waiting(Path(members[0].labels[PRIVATE_DIR], "s", "wait")):
                break
            time.sleep(0.1)
        assert members, "the start service filled no pool"
        time.sleep(3)  # the pool measures an idle member's memory (~1 s) before it hands it out
        second = plain_kernel_manager(tmp_path / "kernels2")
        t0 = time.monotonic()
        second.start_kernel(cwd=str(work), env=env)
        kc2 = second.client()
        kc2.start_channels()
        kc2.wait_for_ready(timeout=60)
        print(f"pooled kernel ready after {time.monotonic() - t0:.2f} s")
        assert _run(kc2, "import os; print(os.getcwd())") == str(work.resolve())
        # No container of its own: the pooled one is this kernel (it goes with it, below).
        assert _containers(runtime, second) == [] and runtime.state(members[0].id).running
        kc2.stop_channels()
        second.shutdown_kernel()
        deadline = time.monotonic() + 15
        while runtime.state(members[0].id) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert runtime.state(members[0].id) is None  # a taken member goes with its kernel
        _shut_down(first, runtime)
    finally:
        if service:
            _stop_service(service)
    left = [m for m in runtime.list({ROLE: POOL_ROLE}) if m.labels.get(SERVER_PID) == str(service)]
    assert left == []  # the service's idle members left with it


def test_sigkill_in_the_middle_of_a_start_leaves_nothing(
    runtime: Any, python_image: str, tmp_path: Path
) -> None:
    """Killed the moment its container exists (before the kernel answers): the service, whose
    connection closed, removes it."""
    from jupyter_client.connect import write_connection_file

    conn, _ = write_connection_file(str(tmp_path / "kernel-midstart.json"), ip="127.0.0.1")
    argv = [sys.executable, "-m", "nbcontainers.launch", "--kernel", "nbc-python", "--image"]
    argv += ["python", "-f", conn, "--", "python3", "-m", "ipykernel_launcher", "-f", conn]
    launcher = subprocess.Popen(argv, cwd=tmp_path, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not runtime.list({KERNEL_ID: "midstart"}) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert runtime.list({KERNEL_ID: "midstart"}), "no container was started"
    launcher.kill()
    launcher.wait()
    t0 = time.monotonic()
    while runtime.list({KERNEL_ID: "midstart"}) and time.monotonic() - t0 < 60:
        time.sleep(0.1)
    assert runtime.list({KERNEL_ID: "midstart"}) == []
    print(f"container gone {time.monotonic() - t0:.2f} s after SIGKILL mid-start")


def test_a_dead_service_ends_the_kernel_and_the_reaper_removes_it(
    runtime: Any, plain: tuple[KernelManager, Path]
) -> None:
    """The net under the net: the start service killed too (SIGKILL), the launcher ends with
    an error and its reaper removes the container."""
    km, _ = plain
    (state,) = _containers(runtime, km)
    os.kill(_service_of(runtime, state.id), signal.SIGKILL)
    launcher = km.provisioner.process  # type: ignore[union-attr]
    assert launcher.wait(timeout=30) != 0
    t0 = time.monotonic()
    while runtime.state(state.id) and time.monotonic() - t0 < 60:
        time.sleep(0.1)
    assert runtime.state(state.id) is None, "the container outlived launcher and service"
    print(f"container gone {time.monotonic() - t0:.2f} s after the launcher left")
