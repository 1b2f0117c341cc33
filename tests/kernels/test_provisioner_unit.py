"""Provisioner logic against the shared in-memory FakeRuntime: fast, no engine. The same
behaviours are proven against a real engine in the docker-marked tests."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.manager import KernelManager

from nbcontainers.catalog.entries import load_catalog
from nbcontainers.errors import ConfigError
from nbcontainers.kernels.plan import parse_mount
from nbcontainers.kernels.provisioner import ContainerProvisioner
from nbcontainers.labels import ROLE
from nbcontainers.runtimes.fake import FakeRuntime


def _fake() -> FakeRuntime:
    """The shared in-memory engine with every catalog image (what the fake_runtime fixture
    gives), for tests that need more than one."""
    return FakeRuntime(images=[image.ref for image in load_catalog(include_user=False).values()])


def _provisioner(
    kernel_id: str = "k-1234", **config: Any
) -> tuple[ContainerProvisioner, FakeRuntime]:
    km = KernelManager(kernel_name="nbc-python")
    prov = ContainerProvisioner(
        kernel_id=kernel_id, kernel_spec=km.kernel_spec, parent=km, image="python", **config
    )
    fake = _fake()
    prov.runtime = fake
    return prov, fake


def _launch(prov: ContainerProvisioner, cwd: Path) -> None:
    async def go() -> None:
        kw = await prov.pre_launch(cwd=str(cwd))
        await prov.launch_kernel(kw.pop("cmd"), **kw)

    asyncio.run(go())


def test_unknown_key_lists_valid_keys() -> None:
    km = KernelManager(kernel_name="nbc-python")
    with pytest.raises(ConfigError, match=r"'memory'.*Valid keys:.*mem_limit"):
        ContainerProvisioner(
            kernel_id="k", kernel_spec=km.kernel_spec, parent=km, image="python", memory="1g"
        )


def test_spec_is_safe_and_mounts_workspace(tmp_path: Path) -> None:
    prov, fake = _provisioner(mem_limit="1g", cpus=1.5)
    _launch(prov, tmp_path)
    spec = fake.specs[-1]
    assert spec.command[-2:] == ("-f", "/run/nbcontainers/kernel.json")
    assert spec.working_dir == str(tmp_path.resolve())
    assert spec.cap_drop == ("ALL",) and spec.init and "no-new-privileges" in spec.security_opt
    assert spec.mem_limit == "1g" and spec.nano_cpus == 1_500_000_000
    assert spec.ports == {}  # ipc
    assert spec.gpus is None
    assert not any("docker.sock" in m.source for m in spec.mounts)
    conn = [m for m in spec.mounts if m.target == "/run/nbcontainers/kernel.json"]
    assert conn and conn[0].read_only
    kernel_id = prov.container_id
    asyncio.run(prov.cleanup())
    assert kernel_id is not None and fake.state(kernel_id) is None  # removed
    assert [s.name for s in fake.list({})] == [fake.specs[0].name]  # only the shared holder left


def test_tcp_ports_only_on_loopback(tmp_path: Path) -> None:
    prov, fake = _provisioner(transport="tcp")
    _launch(prov, tmp_path)
    spec = fake.specs[-1]
    assert len(spec.ports) == 5
    assert {ip for ip, _ in spec.ports.values()} == {"127.0.0.1"}
    asyncio.run(prov.cleanup())


def test_crash_report_has_code_oom_and_log(tmp_path: Path) -> None:
    prov, fake = _provisioner(mem_limit="512m")
    _launch(prov, tmp_path)
    fake.exit(prov.container_id or "", 137, oom=True, log="Traceback...\nMemoryError: boom\n")
    assert asyncio.run(prov.poll()) == 137
    report = prov.last_crash or ""
    assert "exited with code 137" in report
    assert "out of memory" in report and "512m" in report
    assert "MemoryError: boom" in report
    asyncio.run(prov.cleanup())


def test_requested_shutdown_is_not_a_crash(tmp_path: Path) -> None:
    prov, fake = _provisioner()
    _launch(prov, tmp_path)
    # Jupyter's shutdown: a shutdown_request message, then the kernel exits on its own.
    asyncio.run(prov.shutdown_requested())
    fake.exit(prov.container_id or "", 0)
    assert asyncio.run(prov.poll()) == 0
    assert prov.last_crash is None
    asyncio.run(prov.cleanup())
    # terminate(): SIGTERM, which the fake engine (like a real one) ends the kernel with.
    _launch(prov, tmp_path)
    asyncio.run(prov.terminate())
    assert asyncio.run(prov.poll()) == 143
    assert prov.last_crash is None
    asyncio.run(prov.cleanup())


def test_root_is_never_mounted_as_workspace() -> None:
    prov, fake = _provisioner()
    _launch(prov, Path("/"))
    assert all(m.target != "/" for m in fake.specs[-1].mounts)
    # It starts at home instead (kernels/home.py: ~ is the user's home where one is mounted).
    assert fake.specs[-1].working_dir == fake.specs[-1].env["HOME"] != "/"
    asyncio.run(prov.cleanup())


@pytest.mark.parametrize("bad", ["/data", "a:b:c:d", "x:/y:rx"])
def test_bad_extra_mount(bad: str) -> None:
    with pytest.raises(ConfigError, match="extra_mounts"):
        parse_mount(bad)


def test_extra_mount_defaults_read_only(tmp_path: Path) -> None:
    mount = parse_mount(f"{tmp_path}:/data")
    assert mount.read_only and mount.target == "/data"
    assert not parse_mount(f"{tmp_path}:/data:rw").read_only


def test_shared_network_holder_is_reused(tmp_path: Path) -> None:
    prov, fake = _provisioner()
    _launch(prov, tmp_path)
    holder = fake.specs[0]
    assert holder.command == ("sleep", "infinity") and holder.network_mode == "bridge"
    assert holder.labels["io.nbcontainers.role"] == "netns" and holder.cap_drop == ("ALL",)
    second, _ = _provisioner("k-5678")  # the engine, like Docker, refuses a name twice
    second.runtime = fake
    _launch(second, tmp_path)
    assert len(fake.specs) == 3  # one holder, two kernels
    (holder_state,) = fake.list({ROLE: "netns"})
    assert fake.specs[1].network_mode == fake.specs[2].network_mode
    assert fake.specs[1].network_mode == f"container:{holder_state.id}"
    for p in (prov, second):
        asyncio.run(p.cleanup())


def test_tcp_does_not_use_the_shared_namespace(tmp_path: Path) -> None:
    prov, fake = _provisioner(transport="tcp")
    _launch(prov, tmp_path)
    assert len(fake.specs) == 1 and fake.specs[0].network_mode == "bridge"
    asyncio.run(prov.cleanup())


def test_traitlets_config_applies_and_kernelspec_wins() -> None:
    from traitlets.config import Config

    config = Config({"ContainerProvisioner": {"mem_limit": "3g", "shm_size": "8g"}})
    km = KernelManager(kernel_name="nbc-python", config=config)
    prov = ContainerProvisioner(
        kernel_id="k", kernel_spec=km.kernel_spec, parent=km, image="python", shm_size="1g"
    )
    assert prov.mem_limit == "3g"  # from c.ContainerProvisioner
    assert prov.shm_size == "1g"  # the kernelspec's value wins


def test_gpu_image_gets_all_gpus_when_host_has_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nbcontainers.kernels.gpu_request as gpus_module
    from nbcontainers.hostgpus import GPU, HostGPUs

    host = HostGPUs((GPU(0, "H100", "GPU-1", 81559),), "570.86", "13.0", "nvml")
    monkeypatch.setattr(gpus_module, "detect_gpus", lambda: host)
    km = KernelManager(kernel_name="nbc-pytorch-gpu")
    prov = ContainerProvisioner(
        kernel_id="k", kernel_spec=km.kernel_spec, parent=km, image="pytorch-gpu"
    )
    fake = _fake()
    # The fake engine hands out no GPUs by default; this one says it does, as Docker's does.
    facts = replace(fake.ping(), gpu_mode="device-requests")
    monkeypatch.setattr(fake, "ping", lambda: facts)
    prov.runtime = fake
    _launch(prov, tmp_path)
    assert fake.specs[-1].gpus is not None and fake.specs[-1].gpus.count == -1
    asyncio.run(prov.cleanup())
    # Specific devices, docker's spelling.
    prov2 = ContainerProvisioner(
        kernel_id="k2",
        kernel_spec=km.kernel_spec,
        parent=km,
        image="pytorch-gpu",
        gpus="device=0",
    )
    prov2.runtime = fake
    _launch(prov2, tmp_path)
    assert fake.specs[-1].gpus is not None and fake.specs[-1].gpus.device_ids == ("0",)
    asyncio.run(prov2.cleanup())


def test_cpu_image_gets_no_gpu_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nbcontainers.kernels.gpu_request as gpus_module

    def no_probe() -> None:
        raise AssertionError("a CPU image must not even probe for GPUs")

    monkeypatch.setattr(gpus_module, "detect_gpus", no_probe)
    prov, fake = _provisioner()
    _launch(prov, tmp_path)
    assert fake.specs[-1].gpus is None
    asyncio.run(prov.cleanup())
