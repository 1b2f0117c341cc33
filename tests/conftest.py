"""Shared fixtures: a real engine (failing, not skipping, in CI), kernelspecs in a temp prefix,
and a check that every test removes the kernel containers it started."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from nbcontainers.errors import EngineUnavailable
from nbcontainers.labels import KERNEL_ID, ROLE
from nbcontainers.serving.smoke import LABEL as SERVING

REQUIRE_DOCKER = os.environ.get("NBCONTAINERS_REQUIRE_DOCKER") == "1"
pytest_plugins = ["tests.swarmnet"]  # the `swarm` fixture: a multi-node Docker Swarm
BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def runtime() -> Iterator[object]:
    from nbcontainers.kernels.orphans import find_orphans, remove_orphans
    from nbcontainers.runtimes.docker.runtime import DockerRuntime

    rt = DockerRuntime()
    try:
        rt.ping()
    except EngineUnavailable as exc:
        if REQUIRE_DOCKER:
            pytest.fail(f"NBCONTAINERS_REQUIRE_DOCKER=1 but no engine answers: {exc}")
        pytest.skip(f"no Docker engine: {exc}")
    yield rt
    # The shared network holder outlives single tests by design; the session removes it.
    remove_orphans(rt, [o for o in find_orphans(rt) if o.container.labels.get(ROLE)])


PODMAN_USER = os.environ.get("NBC_PODMAN_USER", "nbc-podman")
PODMAN_IMAGE = "nbcontainers/base:bookworm"  # loaded into the user's store by ensure-podman.sh


@pytest.fixture(scope="session")
def podman_runtime() -> object:
    """The rootless Podman engine of the test user (made by scripts/ensure-podman.sh), started
    the way every user's is: on demand, by nbcontainers running as that user."""
    import pwd

    from nbcontainers.runtimes.podman.runtime import PodmanRuntime

    try:
        user = pwd.getpwnam(PODMAN_USER)
    except KeyError:
        if REQUIRE_DOCKER:
            pytest.fail(f"no user {PODMAN_USER}: run scripts/ensure-podman.sh (make test does)")
        pytest.skip(f"no user {PODMAN_USER} for rootless Podman")
    run_dir = f"/run/user/{user.pw_uid}"
    started = subprocess.run(
        # Not root's XDG_DATA_HOME (own_kernel_homes points it at a test folder): Podman
        # keeps the user's image store under it.
        ["runuser", "-u", PODMAN_USER, "--", "env", "-u", "XDG_DATA_HOME", f"HOME={user.pw_dir}",
         f"XDG_RUNTIME_DIR={run_dir}", sys.executable, "-c",
         "from nbcontainers.runtimes.podman import PodmanRuntime; print(PodmanRuntime().ping())"],
        capture_output=True, text=True, timeout=60, cwd="/", check=False,
    )  # fmt: skip
    if started.returncode != 0:
        pytest.fail(f"{PODMAN_USER}'s rootless Podman did not start:\n{started.stderr[-2000:]}")
    rt = PodmanRuntime(base_url=f"unix://{run_dir}/podman/podman.sock")
    if rt.image_info(PODMAN_IMAGE) is None:
        pytest.fail(f"{PODMAN_IMAGE} is not in {PODMAN_USER}'s store: run scripts/ensure-podman.sh")
    return rt


def _ensure_built(runtime: object, name: str) -> None:
    from nbcontainers.catalog.build import build_image
    from nbcontainers.catalog.entries import load_catalog

    image = load_catalog()[name]
    if runtime.image_info(image.ref) is None:  # type: ignore[attr-defined]
        build_image(image, runtime, on_line=lambda line: sys.stderr.write(line + "\n"))  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def python_image(runtime: object) -> str:
    _ensure_built(runtime, "python")
    return "python"


@pytest.fixture(scope="session")
def torch_image(runtime: object) -> str:
    _ensure_built(runtime, "pytorch-cpu")
    return "pytorch-cpu"


@pytest.fixture(scope="session", autouse=True)
def kernelspec_prefix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Install the nbc-* kernelspecs into a private prefix that Jupyter searches first."""
    from nbcontainers.catalog.entries import load_catalog
    from nbcontainers.catalog.kernelspecs import install_kernelspecs

    prefix = tmp_path_factory.mktemp("jupyter-prefix")
    install_kernelspecs(load_catalog(include_user=False), prefix=str(prefix))
    data = prefix / "share" / "jupyter"
    old = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, [str(data), old]))
    yield data
    if old is None:
        os.environ.pop("JUPYTER_PATH", None)
    else:
        os.environ["JUPYTER_PATH"] = old


@pytest.fixture(autouse=True)
def own_kernel_homes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Each test's kernels get a home (and a pip user base) of their own: a kernel's ``~``
    lasts across kernels by design (kernels/home.py keeps it in the server user's data dir),
    so without this one test's `%pip install` would be in the next test's kernel."""
    old = os.environ.get("XDG_DATA_HOME")
    os.environ["XDG_DATA_HOME"] = str(tmp_path_factory.mktemp("data-home"))
    yield
    if old is None:
        os.environ.pop("XDG_DATA_HOME", None)
    else:
        os.environ["XDG_DATA_HOME"] = old


@pytest.fixture(autouse=True)
def no_leaked_containers(request: pytest.FixtureRequest) -> Iterator[None]:
    """Docker-marked tests must remove every kernel container they start."""
    if request.node.get_closest_marker("docker") is None:
        yield
        return
    rt = request.getfixturevalue("runtime")
    labels = (KERNEL_ID, SERVING)
    before = {s.id for label in labels for s in rt.list({label: None})}
    yield
    leaked = [s for label in labels for s in rt.list({label: None}) if s.id not in before]
    for state in leaked:
        rt.remove(state.id)
    assert not leaked, f"test left containers behind: {[s.name for s in leaked]}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(python_image: str, tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    """A real Jupyter Server (it also serves JupyterLab at /lab) rooted in ``tmp_path``, with a
    Hub token in its environment that kernels must not see. Yields (base URL, token, root)."""
    with jupyter_server(tmp_path) as running:
        yield running


@contextlib.contextmanager
def jupyter_server(tmp_path: Path, *args: str) -> Iterator[tuple[str, str, Path]]:
    """The ``server`` fixture's server, with more command-line ``args``; its log is
    ``tmp_path/server.log``."""
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTERHUB_API_TOKEN": "hub-token-must-not-leak"}
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen(
        [
            str(BIN / "jupyter"),
            "server",
            "--no-browser",
            f"--port={port}",
            "--ip=127.0.0.1",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={tmp_path}",
            *(["--allow-root"] if os.getuid() == 0 else []),
            *args,
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
            break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        log.close()
        pytest.fail("jupyter server did not come up:\n" + (tmp_path / "server.log").read_text())
    try:
        yield base, token, tmp_path
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


@pytest.fixture
def fake_runtime() -> object:
    """The in-memory runtime with every catalog image present: the fast tier's engine."""
    from nbcontainers.catalog.entries import load_catalog
    from nbcontainers.runtimes.fake import FakeRuntime

    return FakeRuntime(images=[image.ref for image in load_catalog(include_user=False).values()])
