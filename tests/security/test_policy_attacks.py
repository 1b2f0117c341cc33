"""The admin's policy, attacked by a hub user who controls their own settings (traitlets
config, a kernelspec's config and env, their catalog file): each test tries one way past a
rule and looks at what the engine would receive (the fake engine records every spec it runs)
or at what the engine did (pulls, containers). Every one of these passed on the unchanged
code: the attack worked (see /work/notes/h1-policy.md for the failures seen)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.manager import KernelManager

from nbcontainers.catalog.entries import load_catalog
from nbcontainers.errors import ConfigError
from nbcontainers.kernels import policy as policy_module
from nbcontainers.kernels.plan import HOME
from nbcontainers.kernels.pool import kernel_pool
from nbcontainers.kernels.pooled import POOL_ROLE, TAKEN, WAITING
from nbcontainers.kernels.provisioner import ContainerProvisioner
from nbcontainers.labels import KERNEL_ID, OWNER, PRIVATE_DIR, ROLE
from nbcontainers.runtimes.base import ContainerSpec
from nbcontainers.runtimes.fake import FakeRuntime

MiB = 1 << 20


def size_of(text: str) -> int:
    """A size as docker-py reads it (the engine's own client: what the engine receives)."""
    from docker.utils import parse_bytes

    return int(parse_bytes(text))


@pytest.fixture
def policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """``policy(rules)`` makes ``rules`` the admin's policy file (root-owned, 0644)."""

    def write(rules: dict[str, Any]) -> Path:
        path = tmp_path / "policy.json"
        path.write_text(json.dumps(rules))
        path.chmod(0o644)
        monkeypatch.setattr(policy_module, "POLICY_FILE", path)
        return path

    return write


@pytest.fixture
def fake() -> FakeRuntime:
    return FakeRuntime(images=[i.ref for i in load_catalog(include_user=False).values()])


@pytest.fixture
def fresh_pool() -> Iterator[None]:
    yield
    kernel_pool().drain()
    kernel_pool().reopen()


def start(
    fake: FakeRuntime, cwd: Path, kernel_id: str = "k-1", image: str = "python", **config: Any
) -> ContainerProvisioner:
    km = KernelManager(kernel_name="nbc-python")
    prov = ContainerProvisioner(
        kernel_id=kernel_id, kernel_spec=km.kernel_spec, parent=km, image=image, **config
    )
    prov.runtime = fake

    async def go() -> None:
        kw = await prov.pre_launch(cwd=str(cwd))
        await prov.launch_kernel(kw.pop("cmd"), **kw)

    asyncio.run(go())
    return prov


def kernel_spec_run(fake: FakeRuntime) -> ContainerSpec:
    """The last kernel container the engine was asked to run (not a network holder)."""
    return [s for s in fake.specs if KERNEL_ID in s.labels][-1]


# -- "unlimited" in disguise ----------------------------------------------------------------


@pytest.mark.parametrize("asked", ["0", "0g", "0.0001", "0.001m", "1k", "-1"])
def test_a_memory_limit_the_engine_reads_as_none_is_refused_under_max_mem_limit(
    asked: str, policy: Any, fake: FakeRuntime, tmp_path: Path
) -> None:
    policy({"max_mem_limit": "4g"})
    with pytest.raises(ConfigError, match=r"mem_limit="):
        start(fake, tmp_path, mem_limit=asked)
    assert not [s for s in fake.specs if KERNEL_ID in s.labels]


@pytest.mark.parametrize("asked", ["0", "0g", "0.0001"])
def test_a_memory_limit_of_zero_is_refused_without_a_policy_too(
    asked: str, fake: FakeRuntime, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match=r"mem_limit=.*no memory limit"):
        start(fake, tmp_path, mem_limit=asked)


@pytest.mark.parametrize("asked", [1e-10, 0.001, -1.0, float("inf"), float("nan")])
def test_a_cpu_limit_that_rounds_to_none_is_refused(
    asked: float, policy: Any, fake: FakeRuntime, tmp_path: Path
) -> None:
    policy({"max_cpus": 2})
    with pytest.raises(ConfigError, match=r"cpus="):
        start(fake, tmp_path, cpus=asked)


@pytest.mark.parametrize("asked", [0, -1])
def test_a_process_cap_of_none_is_refused(asked: int, fake: FakeRuntime, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"pids_limit=.*no process limit"):
        start(fake, tmp_path, pids_limit=asked)


def test_shm_and_home_cannot_outgrow_the_memory_cap(
    policy: Any, fake: FakeRuntime, tmp_path: Path
) -> None:
    # /dev/shm and the HOME tmpfs are memory: a 512g shm was an unlimited kernel.
    policy({"max_mem_limit": "1g"})
    with pytest.raises(ConfigError, match=r"shm_size='512g'.*max_mem_limit"):
        start(fake, tmp_path, shm_size="512g")
    prov = start(fake, tmp_path)  # the defaults (2g shm, 4g HOME) shrink to fit
    spec = kernel_spec_run(fake)
    assert size_of(spec.shm_size or "0") <= 1 << 30
    home = dict(o.split("=", 1) for o in spec.tmpfs[HOME].split(",") if "=" in o)
    assert 0 < size_of(home["size"]) <= 1 << 30, spec.tmpfs
    asyncio.run(prov.cleanup())


def test_max_shm_and_tmpfs_rules(policy: Any, fake: FakeRuntime, tmp_path: Path) -> None:
    policy({"max_shm_size": "256m", "max_tmpfs_size": "512m"})
    with pytest.raises(ConfigError, match=r"shm_size='1g'.*max_shm_size"):
        start(fake, tmp_path, shm_size="1g")
    with pytest.raises(ConfigError, match=r"home_size='8g'.*max_tmpfs_size"):
        start(fake, tmp_path, home_size="8g")
    with pytest.raises(ConfigError, match=r"home_size='0'"):
        start(fake, tmp_path, home_size="0")  # tmpfs size=0 is an unlimited tmpfs
    prov = start(fake, tmp_path)
    spec = kernel_spec_run(fake)
    assert size_of(spec.shm_size or "0") == 256 * MiB
    assert "size=512m" in spec.tmpfs[HOME]
    asyncio.run(prov.cleanup())


# -- what the container may open ------------------------------------------------------------


@pytest.mark.parametrize("network", ["host", "container:someone-elses-kernel", "theirnet"])
def test_a_policy_keeps_kernels_off_the_host_network(
    network: str, policy: Any, fake: FakeRuntime, tmp_path: Path
) -> None:
    policy({"max_mem_limit": "4g"})  # any policy: host networking is the admin's to allow
    with pytest.raises(ConfigError, match=rf"network='{network}'.*allowed_networks"):
        start(fake, tmp_path, network=network)
    policy({"allowed_networks": ["bridge", "host"]})
    prov = start(fake, tmp_path, network="host", transport="tcp")
    assert kernel_spec_run(fake).network_mode == "host"
    asyncio.run(prov.cleanup())


def test_a_policy_keeps_host_folders_out_unless_allowed(
    policy: Any, fake: FakeRuntime, tmp_path: Path
) -> None:
    policy({"max_mem_limit": "4g"})
    with pytest.raises(ConfigError, match=r"extra_mounts.*/etc.*allowed_mounts"):
        start(fake, tmp_path, extra_mounts=["/etc:/hostetc:rw"])
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    policy({"allowed_mounts": [str(data)]})
    with pytest.raises(ConfigError, match=r"read-write.*allowed_mounts"):
        start(fake, tmp_path, extra_mounts=[f"{data}:/data:rw"])
    prov = start(fake, tmp_path, extra_mounts=[f"{data}:/data"])
    [mount] = [m for m in kernel_spec_run(fake).mounts if m.target == "/data"]
    assert mount.read_only
    asyncio.run(prov.cleanup())


def test_the_engine_socket_is_never_mounted(fake: FakeRuntime, tmp_path: Path) -> None:
    import socket

    path = tmp_path / "engine.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    try:
        with pytest.raises(ConfigError, match=r"extra_mounts.*socket"):
            start(fake, tmp_path, extra_mounts=[f"{path}:/var/run/docker.sock"])
    finally:
        server.close()


@pytest.mark.parametrize(
    "how",
    [
        {"env": {"NVIDIA_VISIBLE_DEVICES": "all"}},
        {"env": {"NVIDIA_DRIVER_CAPABILITIES": "all"}},
        {"env": {"AMD_VISIBLE_DEVICES": "all"}},
    ],
)
def test_environment_cannot_hand_out_gpus_past_allowed_gpus(
    how: dict[str, Any], policy: Any, fake: FakeRuntime, tmp_path: Path
) -> None:
    policy({"allowed_gpus": []})
    with pytest.raises(ConfigError, match=r"steers the container runtime"):
        start(fake, tmp_path, **how)


def test_the_server_environment_and_kernelspec_env_cannot_either(
    fake: FakeRuntime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NVIDIA_VISIBLE_DEVICES", "all")
    prov = start(fake, tmp_path, env_allowlist=["*"])  # the server's variable is dropped
    spec = kernel_spec_run(fake)
    # No GPU granted: the runtime is told so, whatever the image's ENV says (nvidia/cuda
    # images set NVIDIA_VISIBLE_DEVICES=all, which the NVIDIA runtime obeys).
    assert spec.env["NVIDIA_VISIBLE_DEVICES"] == "void"
    asyncio.run(prov.cleanup())


# -- images -----------------------------------------------------------------------------------


def _user_catalog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, images: dict[str, Any]) -> Path:
    folder = tmp_path / "config"
    folder.mkdir(exist_ok=True)
    (folder / "images.json").write_text(json.dumps({"images": images}))
    monkeypatch.setenv("NBCONTAINERS_CONFIG_DIR", str(folder))
    return folder / "images.json"


def test_a_user_catalog_cannot_redefine_a_shipped_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _user_catalog(tmp_path, monkeypatch, {"python": {"ref": "evil.example/py:1"}})
    with pytest.raises(ConfigError, match=rf"{path}.*'python'.*shipped catalog"):
        load_catalog()
    _user_catalog(tmp_path, monkeypatch, {"nbc-python": {"ref": "evil.example/py:1"}})
    with pytest.raises(ConfigError, match=r"'nbc-python'"):
        load_catalog()


def test_allowed_images_are_the_admins_refs_not_names(
    policy: Any, fake: FakeRuntime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy({"allowed_images": ["pytorch-*", "python"]})
    _user_catalog(tmp_path, monkeypatch, {"pytorch-evil": {"ref": "evil.example/x:1"}})
    fake.add_image("evil.example/x:1")
    with pytest.raises(ConfigError, match=r"evil.example/x:1.*not allowed.*allowed_images"):
        start(fake, tmp_path, image="pytorch-evil")
    # Another name for an allowed image's ref is that image: allowed.
    python_ref = load_catalog(include_user=False)["python"].ref
    _user_catalog(tmp_path, monkeypatch, {"mypy": {"ref": python_ref}})
    prov = start(fake, tmp_path, image="mypy")
    assert kernel_spec_run(fake).image == python_ref
    asyncio.run(prov.cleanup())


def test_the_policy_is_checked_before_anything_is_pulled(
    policy: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy({"allowed_images": ["python"]})
    _user_catalog(tmp_path, monkeypatch, {"mine": {"ref": "evil.example/x:1"}})
    fake = FakeRuntime(registry=["evil.example/x:1"])
    with pytest.raises(ConfigError, match=r"not allowed"):
        start(fake, tmp_path, image="mine", missing_image="pull")
    assert fake.image_info("evil.example/x:1") is None  # never pulled


# -- counts -------------------------------------------------------------------------------


def launchers(fake: FakeRuntime) -> None:
    """Make the fake's pooled members behave as the real launcher does: wait on the FIFO
    for a hand-over (and read it)."""
    real_run = fake.run

    def run(spec: ContainerSpec) -> str:
        cid = real_run(spec)
        if spec.labels.get(ROLE) == POOL_ROLE:
            fifo = Path(spec.command[3])

            def wait() -> None:
                while True:  # reopened after every probe, as waiting.py does
                    try:
                        with open(fifo if fifo.exists() else fifo.parent / TAKEN) as f:
                            if f.read():
                                return
                    except OSError:
                        return

            threading.Thread(target=wait, daemon=True).start()
        return cid

    fake.run = run  # type: ignore[method-assign]


def kernels_of(fake: FakeRuntime, owner: str) -> list[Any]:
    return [s for s in fake.list({OWNER: owner, KERNEL_ID: None}) if s.running]


def test_pool_members_count_against_max_kernels_per_user(
    policy: Any, fake: FakeRuntime, tmp_path: Path, fresh_pool: None
) -> None:
    policy({"max_kernels_per_user": 2})
    launchers(fake)
    config = {"pool_size": 1, "workspace_root": str(tmp_path)}
    first = start(fake, tmp_path, "k-1", **config)
    owner = fake.list({KERNEL_ID: "k-1"})[0].labels[OWNER]
    assert kernel_pool().wait_ready(1, timeout=10)
    second = start(fake, tmp_path, "k-2", **config)  # takes the pooled one
    assert second._pooled is not None
    time.sleep(0.5)  # the pool would refill now
    assert len(kernels_of(fake, owner)) <= 2, [s.name for s in kernels_of(fake, owner)]
    # The handed-out kernel marks its own socket folder "waiting" (it is mounted read-write):
    # it must still count.
    private = Path(next(s for s in fake.list({ROLE: POOL_ROLE}) if s.running).labels[PRIVATE_DIR])
    (private / "s" / WAITING).touch()
    with pytest.raises(ConfigError, match=r"already runs 2 container kernels"):
        start(fake, tmp_path, "k-3", **config)
    assert len(kernels_of(fake, owner)) <= 2
    for prov in (first, second):
        asyncio.run(prov.cleanup())


def test_pool_size_and_memory_are_capped(policy: Any, fake: FakeRuntime, tmp_path: Path) -> None:
    policy({"max_pool_size": 2, "max_pool_memory": "1g"})
    with pytest.raises(ConfigError, match=r"pool_size=50.*max_pool_size"):
        start(fake, tmp_path, pool_size=50, workspace_root=str(tmp_path))
    with pytest.raises(ConfigError, match=r"pool_max_memory='8g'.*max_pool_memory"):
        start(fake, tmp_path, pool_size=1, pool_max_memory="8g", workspace_root=str(tmp_path))


def test_a_pool_memory_cap_of_zero_is_no_cap_and_refused(
    fake: FakeRuntime, tmp_path: Path, fresh_pool: None
) -> None:
    with pytest.raises(ConfigError, match=r"pool_max_memory='0'"):
        start(fake, tmp_path, pool_size=1, pool_max_memory="0", workspace_root=str(tmp_path))
