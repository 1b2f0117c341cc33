"""The warm pool without an engine: what keys a pooled container, the workspace root it
mounts, a pool the engine refuses to fill, a drain while a member starts, an engine that
cannot measure memory, and how doctor counts pooled containers. That a pooled kernel equals
a cold one is proven on real engines (test_pool_docker.py, test_pool_podman.py)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.manager import KernelManager

from nbcontainers.catalog.entries import load_catalog
from nbcontainers.doctor.checks import pool_check
from nbcontainers.errors import EngineUnavailable
from nbcontainers.kernels.connection import PrivateDir
from nbcontainers.kernels.plan import CONNECTION_FILE, KernelStart, LaunchConfig, plan_launch
from nbcontainers.kernels.pool import kernel_pool
from nbcontainers.kernels.pooled import POOL_ROLE, pool_key, waiting_command
from nbcontainers.kernels.provisioner import ContainerProvisioner
from nbcontainers.labels import ROLE
from nbcontainers.pipsettings import PipSettings
from nbcontainers.runtimes.base import LIMITS, ContainerSpec, ContainerStats, EngineFacts
from nbcontainers.runtimes.fake import FakeRuntime

from .test_plan_unit import HOST, _no_host_accounts  # noqa: F401 (an autouse fixture)

FACTS = EngineFacts(
    "docker", "20.10", "1.41", "unix://x", "linux", False, "none", frozenset(LIMITS)
)
COMMAND = ("python3", "-m", "ipykernel_launcher", "-f", CONNECTION_FILE)
CONNECTION = {
    "transport": "ipc",
    "ip": "/tmp/nbc-a/s/k",
    "shell_port": 1,
    "iopub_port": 2,
    "stdin_port": 3,
    "control_port": 4,
    "hb_port": 5,
    "signature_scheme": "hmac-sha256",
    "key": "a-key",
}


def _spec(
    tmp_path: Path, cwd: Path, session: str = "a.ipynb", home: Path | None = None, **config: Any
) -> ContainerSpec:
    """The cold start's container spec for one start (a fresh private folder and kernel id);
    ``home``: the server's HOME (else it has none, and kernels keep the tmpfs HOME)."""
    env = {"LANG": "C.UTF-8", "JPY_SESSION_NAME": session}
    if home is not None:
        env["HOME"] = str(home)
    kernel = KernelStart(
        kernel_id=session,
        command=COMMAND,
        cwd=str(cwd),
        env=env,
        private_dir=PrivateDir(tmp_path / f"nbc-{session}"),
        started_at=1_700_000_000.0 + len(session),
    )
    plan = plan_launch(
        LaunchConfig(**config),
        kernel,
        load_catalog(include_user=False)["python"],
        FACTS,
        HOST,
        read_pip=lambda env: PipSettings(),
    )
    return plan.container_spec("container:holder")


def test_two_starts_differing_only_in_what_a_hand_over_gives_share_a_key(tmp_path: Path) -> None:
    nb1, nb2 = tmp_path / "nb1", tmp_path / "nb2"
    nb1.mkdir(), nb2.mkdir()
    root = {"workspace_root": str(tmp_path)}
    a, b = _spec(tmp_path, nb1, "a.ipynb", **root), _spec(tmp_path, nb2, "b.ipynb", **root)
    assert a.working_dir == str(nb1) and b.working_dir == str(nb2)  # cwd is handed over
    private = PrivateDir(tmp_path / "nbc-a.ipynb")
    key = pool_key(a, private, CONNECTION)
    assert key is not None and key == pool_key(b, PrivateDir(tmp_path / "nbc-b.ipynb"), CONNECTION)
    # What a hand-over cannot change is in the key: mounts, env, limits, image, command.
    assert pool_key(_spec(tmp_path, nb1, "a.ipynb"), private, CONNECTION) != key  # mounts nb1 only
    assert pool_key(replace(a, env={**a.env, "TZ": "UTC"}), private, CONNECTION) != key
    assert pool_key(replace(a, mem_limit="1g"), private, CONNECTION) != key
    assert pool_key(replace(a, image="other:1"), private, CONNECTION) != key
    assert pool_key(replace(a, security_opt=()), private, CONNECTION) != key
    assert pool_key(replace(a, command=("python3", "-c", "x")), private, CONNECTION) is None
    # A member binds the start's socket names before its start; the signing key it is handed.
    assert pool_key(a, private, {**CONNECTION, "hb_port": 6}) != key
    assert pool_key(a, private, {**CONNECTION, "key": "another", "ip": "/tmp/nbc-b/s/k"}) == key


@pytest.mark.parametrize("home_in_root", [True, False])
def test_a_lasting_home_keeps_two_starts_alike(tmp_path: Path, home_in_root: bool) -> None:
    """Home folder, identity files and environment are the same for every start of a user's
    kernel, so a pooled kernel is keyed like the cold one (whether the workspace root holds
    the home or a folder of the data dir is mounted at its path)."""
    root = tmp_path / "root"
    home = root / "home" if home_in_root else tmp_path / "home"
    nb1, nb2 = root / "nb1", root / "nb2"
    for folder in (home, nb1, nb2):
        folder.mkdir(parents=True)
    a = _spec(tmp_path, nb1, "a.ipynb", home=home, workspace_root=str(root))
    b = _spec(tmp_path, nb2, "b.ipynb", home=home, workspace_root=str(root))
    key = pool_key(a, PrivateDir(tmp_path / "nbc-a.ipynb"), CONNECTION)
    assert key is not None and key == pool_key(b, PrivateDir(tmp_path / "nbc-b.ipynb"), CONNECTION)
    assert a.env["HOME"] == b.env["HOME"] == str(home) and a.env["USER"] == "ada"
    by_target = {m.target: m for m in a.mounts}
    assert by_target["/etc/passwd"].read_only and by_target["/etc/group"].read_only
    assert (str(home) in by_target) is not home_in_root  # a mount of its own only outside
    assert a.tmpfs.keys() == {"/home/nbc"}  # the scratch tmpfs stays (home_size)


def test_workspace_root_is_mounted_only_around_the_notebook(tmp_path: Path) -> None:
    nb = tmp_path / "deep" / "nb"
    nb.mkdir(parents=True)
    inside = _spec(tmp_path, nb, workspace_root=str(tmp_path))
    assert [m.source for m in inside.mounts if m.source == m.target and not m.read_only] == [
        str(tmp_path / "nbc-a.ipynb" / "s"),
        str(tmp_path),
    ]
    assert inside.working_dir == str(nb)
    outside = _spec(tmp_path, nb, workspace_root=str(tmp_path / "elsewhere"))
    assert str(nb) in [m.source for m in outside.mounts] and outside.working_dir == str(nb)
    broad = _spec(tmp_path, nb, workspace_root="/")  # never the whole host
    assert "/" not in [m.source for m in broad.mounts]


def test_the_waiting_command_runs_the_launcher_source_with_the_kernels_python() -> None:
    command = waiting_command(COMMAND, Path("/tmp/nbc-x/s/wait"))
    assert command[:2] == ("python3", "-c")
    assert command[3:] == ("/tmp/nbc-x/s/wait", "-f", CONNECTION_FILE)  # FIFO, kernel's args
    assert "def main(fifo: str" in command[2] and "launch_new_instance" in command[2]
    compile(command[2], "waiting.py", "exec")


@pytest.fixture
def fresh_pool() -> Iterator[None]:
    yield
    kernel_pool().drain()
    kernel_pool().reopen()


def test_a_pool_the_engine_refuses_leaves_starts_cold_with_one_log_line(
    tmp_path: Path, fresh_pool: None, caplog: pytest.LogCaptureFixture
) -> None:
    fake = FakeRuntime(images=[i.ref for i in load_catalog(include_user=False).values()])
    real_run = fake.run

    def run(spec: ContainerSpec) -> str:
        if spec.labels.get(ROLE) == POOL_ROLE:
            raise EngineUnavailable("Cannot reach the engine (fake).")
        return real_run(spec)

    fake.run = run  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="nbcontainers.pool"):
        for kernel_id in ("k-1", "k-2"):
            km = KernelManager(kernel_name="nbc-python")
            prov = ContainerProvisioner(
                kernel_id=kernel_id,
                kernel_spec=km.kernel_spec,
                parent=km,
                image="python",
                pool_size=1,
                workspace_root=str(tmp_path),
            )
            prov.runtime = fake

            async def go(p: ContainerProvisioner = prov) -> None:
                kw = await p.pre_launch(cwd=str(tmp_path))
                await p.launch_kernel(kw.pop("cmd"), **kw)
                await p.cleanup()

            asyncio.run(go())
            assert prov._pooled is None
            assert not kernel_pool().wait_ready(1, timeout=0.3)
    kernels = [s for s in fake.specs if s.labels.get(ROLE) is None]
    assert len(kernels) == 2  # both started cold
    lines = [r.getMessage() for r in caplog.records if "cannot fill" in r.getMessage()]
    assert len(lines) == 1 and "Cannot reach the engine" in lines[0], lines


def test_doctor_counts_pooled_containers(fake_runtime: FakeRuntime, tmp_path: Path) -> None:
    assert "no pooled kernel containers" in pool_check(fake_runtime).detail
    image = next(iter(load_catalog(include_user=False).values())).ref
    fake_runtime.add_image(image)
    waiting = tmp_path / "nbc-w"
    (waiting / "s").mkdir(parents=True)
    (waiting / "s" / "wait").touch()
    for private in (waiting, tmp_path / "nbc-taken"):
        labels = {ROLE: POOL_ROLE, "io.nbcontainers.private-dir": str(private)}
        fake_runtime.run(ContainerSpec(image=image, command=("sleep", "1d"), labels=labels))
    check = pool_check(fake_runtime)
    assert check.status == "ok" and check.detail.startswith("1 idle pooled"), check.detail
    assert "1 handed out" in check.detail


def _start_with_pool(fake: FakeRuntime, tmp_path: Path, **config: Any) -> None:
    """One cold kernel start (and its shutdown) with a pool: the pool starts filling."""
    km = KernelManager(kernel_name="nbc-python")
    prov = ContainerProvisioner(
        kernel_id="k-1", kernel_spec=km.kernel_spec, parent=km, image="python",
        pool_size=1, workspace_root=str(tmp_path), **config,
    )  # fmt: skip
    prov.runtime = fake

    async def go() -> None:
        kw = await prov.pre_launch(cwd=str(tmp_path))
        await prov.launch_kernel(kw.pop("cmd"), **kw)
        await prov.cleanup()

    asyncio.run(go())


def _pooled(fake: FakeRuntime) -> list[Any]:
    return [s for s in fake.list({ROLE: POOL_ROLE})]


def test_waiting_for_every_pool_when_there_is_none_returns_at_once(fresh_pool: None) -> None:
    started = time.monotonic()
    assert kernel_pool().wait_ready(1, timeout=30)
    assert time.monotonic() - started < 1


def test_a_drain_removes_a_member_still_starting(
    tmp_path: Path, fresh_pool: None, caplog: pytest.LogCaptureFixture
) -> None:
    # The fake's member never opens its FIFO: it stays "starting" until the pool closes.
    fake = FakeRuntime(images=[i.ref for i in load_catalog(include_user=False).values()])
    _start_with_pool(fake, tmp_path)
    deadline = time.monotonic() + 10
    while not _pooled(fake) and time.monotonic() < deadline:
        time.sleep(0.01)
    [member] = _pooled(fake)
    private = Path(member.labels["io.nbcontainers.private-dir"])
    assert private.is_dir() and not kernel_pool().wait_ready(1, timeout=0.1)
    with caplog.at_level(logging.WARNING, logger="nbcontainers.pool"):
        started = time.monotonic()
        kernel_pool().drain()  # what a server's exit does
    assert time.monotonic() - started < 5
    assert _pooled(fake) == [] and not private.exists()
    assert not caplog.records  # a member stopped by its pool closing is no failure


def test_an_engine_that_cannot_measure_memory_leaves_the_cap_off_and_says_so(
    tmp_path: Path, fresh_pool: None, caplog: pytest.LogCaptureFixture
) -> None:
    fake = FakeRuntime(images=[i.ref for i in load_catalog(include_user=False).values()])
    real_run = fake.run

    def run(spec: ContainerSpec) -> str:
        cid = real_run(spec)
        if spec.labels.get(ROLE) == POOL_ROLE:  # the member's launcher: waits on its FIFO
            fifo = spec.command[3]
            threading.Thread(target=lambda: Path(fifo).read_text(), daemon=True).start()
        return cid

    fake.run = run  # type: ignore[method-assign]
    fake.stats = lambda cid: ContainerStats(None, None, None)  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="nbcontainers.pool"):
        _start_with_pool(fake, tmp_path, pool_max_memory="1k")  # any member is over 1 KiB
        assert kernel_pool().wait_ready(1, timeout=10)  # not capped: nothing was measured
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "pool_max_memory is not applied" in lines[0], lines
