"""A real JupyterHub (PyPI) with configurable-http-proxy (npm), started as root from
examples/hub/jupyterhub_config.py, with two real Unix users: each user's own token starts an
`nbc-python` kernel on the user's own rootless Podman (image from the shared store), and
neither user reaches the other's server, kernels, engine or home, nor the Docker socket.

Needs root and scripts/ensure-hub.sh (users, JupyterHub, the proxy); runs `hub setup` itself.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import websocket

from nbcontainers.catalog.entries import load_catalog
from nbcontainers.hub.setup import run_setup

from .hubdrive import (
    PASSWORD,
    USERS,
    Hub,
    engine_services,
    execute,
    kill_user_engine,
    kill_user_processes,
    podman_as,
    require_hub_host,
    sign_in,
    start_hub,
    tear_down,
    user_containers,
)

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

TEST_FILE = "nbc-hub-test.txt"


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    require_hub_host()
    _storage_as_before_setup()
    lines: list[str] = []
    setup = run_setup(users=USERS, images=["python"], fix=True, echo=lines.append)
    assert setup.exit_code == 0, "\n".join(lines)
    # A's existing vfs store is kept; B, with none yet, gets native overlay and its own copy.
    assert f"  {USERS[0]}: has vfs storage, kept (switching would hide its images)" in lines
    assert f"  {USERS[1]}: no storage yet; overlay (native overlay works on this kernel)" in lines
    again = run_setup(users=USERS, images=["python"], fix=True, echo=lines.append)
    assert (again.exit_code, again.changes) == (0, []), "\n".join(lines)  # idempotent
    folder = tmp_path_factory.mktemp("hub")
    folder.chmod(0o700)
    running = start_hub(folder, USERS)
    try:
        yield running
    finally:
        tear_down(running, lambda user: Path(pwd.getpwnam(user).pw_dir, TEST_FILE).unlink(True))


def _graph(user: str) -> Path:
    return Path(pwd.getpwnam(user).pw_dir, ".local", "share", "containers", "storage")


def _reset_storage(user: str) -> None:
    kill_user_processes(user)
    argv = ["runuser", "-u", user, "--", "env", "-i", f"HOME={pwd.getpwnam(user).pw_dir}",
            "PATH=/usr/bin:/bin", "podman", "system", "reset", "-f"]  # fmt: skip
    subprocess.run(argv, capture_output=True, timeout=120, cwd="/", check=False)
    for folder in (_graph(user).parent, _graph(user).parents[2] / ".config" / "containers"):
        shutil.rmtree(folder, ignore_errors=True)


def _storage_as_before_setup() -> None:
    """A has a vfs store (a user of an earlier deployment, Podman 4.3's default), B none yet."""
    a, b = USERS
    if {p.name for p in _graph(a).glob("*-layers")} != {"vfs-layers"}:
        _reset_storage(a)
        podman_as(a, "--storage-driver", "vfs", "info")
    _reset_storage(b)


@pytest.fixture(scope="module")
def kernels(hub: Hub) -> dict[str, str]:
    """Each user's token (asked for with the user's password), server and nbc-python kernel."""
    sign_in(hub)
    for user in USERS:
        hub.start_server(user)

    def start(user: str) -> str:
        started = hub.api(
            "POST", f"/user/{user}/api/kernels", hub.tokens[user], json={"name": "nbc-python"}
        )
        assert started.status_code == 201, f"{started.text}\n{hub.log_tail()}"
        return str(started.json()["id"])

    # Both users at the same moment: neither start may disturb the other.
    with ThreadPoolExecutor(len(USERS)) as pool:
        return dict(zip(USERS, pool.map(start, USERS), strict=True))


@pytest.fixture(scope="module")
def local_kernels(hub: Hub, kernels: dict[str, str]) -> dict[str, str]:
    """Each user's plain local kernel (python3, on the host as that user): what a user with a
    notebook or a terminal can do outside any container."""
    found = {}
    for user in USERS:
        started = hub.api(
            "POST", f"/user/{user}/api/kernels", hub.tokens[user], json={"name": "python3"}
        )
        assert started.status_code == 201, started.text
        found[user] = started.json()["id"]
    return found


def test_a_wrong_password_gets_no_token(hub: Hub) -> None:
    assert hub.token_for(USERS[0], "not-the-password").status_code == 403
    assert hub.token_for("root", PASSWORD).status_code == 403  # not an allowed user


def test_each_users_kernel_writes_files_that_user_owns(hub: Hub, kernels: dict[str, str]) -> None:
    for user, kernel in kernels.items():
        entry = pwd.getpwnam(user)
        code = (
            "import os, pathlib\n"
            f"pathlib.Path({TEST_FILE!r}).write_text(os.environ['NBCONTAINERS_IMAGE'])\n"
            "inside = os.path.exists('/.dockerenv') or os.path.exists('/run/.containerenv')\n"
            "print(os.getcwd(), inside)"
        )
        out, reply = execute(hub, user, kernel, code)
        assert reply["status"] == "ok", out
        assert out.split() == [entry.pw_dir, "True"]  # the home, at its own path, in a container
        written = Path(entry.pw_dir, TEST_FILE)
        assert written.read_text() == "python"
        assert (written.stat().st_uid, written.stat().st_gid) == (entry.pw_uid, entry.pw_gid)


def test_a_users_next_kernel_comes_from_the_warm_pool(hub: Hub, kernels: dict[str, str]) -> None:
    # The example warms nbc-python's pool as each server starts (on the user's rootless
    # Podman); once both pools are ready, a start takes a member that runs as the user.
    user, entry = USERS[0], pwd.getpwnam(USERS[0])
    deadline = time.monotonic() + 120
    while hub.log_tail(100_000).count("kernel pool ready for nbc-python") < len(USERS):
        assert time.monotonic() < deadline, hub.log_tail()
        time.sleep(0.2)
    taken = hub.log_tail(100_000).count("kernel from the warm pool")
    started = hub.api(
        "POST", f"/user/{user}/api/kernels", hub.tokens[user], json={"name": "nbc-python"}
    )
    assert started.status_code == 201, started.text
    kernel = started.json()["id"]
    try:
        assert hub.log_tail(100_000).count("kernel from the warm pool") == taken + 1
        code = "import os; open('nbc-pooled.txt', 'w').close(); print(os.getcwd())"
        out, reply = execute(hub, user, kernel, code)
        assert (reply["status"], out.split()) == ("ok", [entry.pw_dir]), out
        written = Path(entry.pw_dir, "nbc-pooled.txt")
        assert (written.stat().st_uid, written.stat().st_gid) == (entry.pw_uid, entry.pw_gid)
        written.unlink()
    finally:
        hub.api("DELETE", f"/user/{user}/api/kernels/{kernel}", hub.tokens[user])


def test_kernels_run_the_images_hub_setup_gave_them(hub: Hub, kernels: dict[str, str]) -> None:
    ref = load_catalog(include_user=False)["python"].ref
    # A (vfs) reads the shared store (read-only); B (overlay) has its own copy.
    for user, read_only in zip(USERS, ("true", "false"), strict=True):
        listed = podman_as(user, "images", "--format", "{{.Repository}}:{{.Tag}} {{.ReadOnly}}")
        assert f"localhost/{ref} {read_only}" in listed.splitlines(), listed
    assert podman_as(USERS[1], "info", "--format", "{{.Store.GraphDriverName}}").strip() == (
        "overlay"
    )


def test_container_use_in_a_users_local_kernel(hub: Hub, local_kernels: dict[str, str]) -> None:
    user, home = USERS[0], pwd.getpwnam(USERS[0]).pw_dir
    kernel = local_kernels[user]
    out, reply = execute(
        hub, user, kernel, "%load_ext nbcontainers\n%container use python", timeout=180
    )
    assert reply["status"] == "ok", out
    code = "import os; print(os.environ.get('NBCONTAINERS_IMAGE'), os.getcwd())"
    out, reply = execute(hub, user, kernel, code)
    assert (reply["status"], out.split()) == ("ok", ["python", home]), out
    out, reply = execute(hub, user, kernel, "%container stop")
    assert reply["status"] == "ok", out


def test_another_users_token_reaches_nothing(hub: Hub, kernels: dict[str, str]) -> None:
    a, b = USERS
    b_token = hub.tokens[b]
    assert hub.api("GET", f"/user/{a}/api/kernels", b_token).status_code == 403
    assert hub.api("DELETE", f"/user/{a}/api/kernels/{kernels[a]}", b_token).status_code == 403
    assert hub.api("POST", f"/hub/api/users/{a}/tokens", b_token, json={}).status_code == 403
    with pytest.raises(websocket.WebSocketBadStatusException):
        execute(hub, a, kernels[a], "print(1)", token=b_token, timeout=10)
    # A's kernel is still there and answers its owner.
    assert execute(hub, a, kernels[a], "print(6 * 7)")[0].strip() == "42"


def test_nobody_reaches_a_root_equivalent_socket(
    hub: Hub, kernels: dict[str, str], local_kernels: dict[str, str]
) -> None:
    probe = (
        "import socket\n"
        "for path in ('/var/run/docker.sock', '/run/docker.sock', '/run/podman/podman.sock'):\n"
        "    s = socket.socket(socket.AF_UNIX)\n"
        "    try:\n"
        "        s.connect(path); print(path, 'OPEN')\n"
        "    except OSError as exc:\n"
        "        print(path, type(exc).__name__)\n"
    )
    for user in USERS:
        for kernel in (kernels[user], local_kernels[user]):
            out, reply = execute(hub, user, kernel, probe)
            assert reply["status"] == "ok", out
            assert "OPEN" not in out, f"{user} opened an engine socket:\n{out}"


def test_one_user_sees_neither_the_others_home_nor_engine(
    hub: Hub, kernels: dict[str, str], local_kernels: dict[str, str]
) -> None:
    a, b = USERS
    a_home = pwd.getpwnam(a).pw_dir
    a_uid = pwd.getpwnam(a).pw_uid
    out, _ = execute(hub, b, kernels[b], f"import os; print(os.path.exists({a_home!r}))")
    assert out.strip() == "False"  # not mounted into B's container
    folders = (
        f"/run/user/{a_uid}",
        f"/run/nbcontainers/{a_uid}",
        f"{a_home}/.cache/nbcontainers/run",
    )
    a_socket = [p for p in folders if os.path.exists(f"{p}/podman/podman.sock")]
    assert a_socket, "A's engine folder not found"
    probe = (
        "import os, socket, subprocess\n"
        f"try:\n    os.listdir({a_home!r}); print('home OPEN')\n"
        "except PermissionError:\n    print('home denied')\n"
        f"s = socket.socket(socket.AF_UNIX)\n"
        f"try:\n    s.connect({a_socket[0] + '/podman/podman.sock'!r}); print('engine OPEN')\n"
        "except OSError as exc:\n    print('engine', type(exc).__name__)\n"
        "print(subprocess.run(['podman', 'ps', '-aq', '--no-trunc'], capture_output=True,"
        " text=True).stdout)\n"
    )
    out, reply = execute(hub, b, local_kernels[b], probe)
    assert reply["status"] == "ok", out
    assert "home denied" in out and "engine OPEN" not in out, out
    a_containers = user_containers(a)
    assert a_containers, "A's kernel container not found in A's engine"
    assert not set(a_containers) & set(out.split()), "B's engine lists A's containers"


def test_an_image_missing_from_the_shared_store_says_ask_your_admin(
    hub: Hub, local_kernels: dict[str, str]
) -> None:
    code = (  # pytorch-cpu is not in the store: hub setup above loaded python only
        "from jupyter_client import KernelManager\n"
        "try:\n    KernelManager(kernel_name='nbc-pytorch-cpu').start_kernel()\n"
        "except Exception as exc:\n    print(type(exc).__name__, exc)\n"
    )
    for user in USERS:  # A reads the shared store, B has its own storage: both are told
        out, _ = execute(hub, user, local_kernels[user], code, timeout=60)
        assert out.startswith("ImageMissing"), out
        assert "Ask your admin to run `nbcontainers hub setup`" in out, out


def test_one_users_engine_crashing_leaves_the_other_alone(
    hub: Hub, kernels: dict[str, str]
) -> None:
    a, b = USERS
    services = engine_services(a)
    assert services, f"{a}'s engine service is not running"
    for pid in services:
        os.kill(pid, signal.SIGKILL)
    out, reply = execute(hub, b, kernels[b], "print(sum(range(10)))")
    assert (reply["status"], out.strip()) == ("ok", "45")


def test_a_users_kernels_start_again_after_their_engine_died(
    hub: Hub, kernels: dict[str, str]
) -> None:
    # A's engine dies with all it ran (its kernel, the warm pool's member, the network holder
    # they joined), A's server lives on. Unchanged code: every later start was a 500 ("remove
    # container …: has dependent containers which must be removed before it") until `gc`.
    a = USERS[0]
    assert kill_user_engine(a), f"{a}'s engine was not running"
    for attempt in range(2):  # the first start heals, the next is as any other
        started = hub.api(
            "POST", f"/user/{a}/api/kernels", hub.tokens[a], json={"name": "nbc-python"}
        )
        assert started.status_code == 201, f"start {attempt}: {started.text}\n{hub.log_tail()}"
        kernel = started.json()["id"]
        try:
            out, reply = execute(hub, a, kernel, "print(6 * 7)", timeout=120)
            assert (reply["status"], out.strip()) == ("ok", "42"), out
        finally:
            hub.api("DELETE", f"/user/{a}/api/kernels/{kernel}", hub.tokens[a])
    # Nothing of the dead engine is left: every container of A's runs (Podman 4.3 prints the
    # state as "Up 27 seconds ago"; an ended one as "Exited (137) …" or "Created").
    states = podman_as(a, "ps", "-a", "--format", "{{.Names}}|{{.State}}").splitlines()
    assert states and all(line.split("|")[1].startswith("Up") for line in states), states
