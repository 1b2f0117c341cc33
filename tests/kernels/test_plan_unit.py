"""The launch plan as a value: mounts, environment, user, network, limits and GPUs decided from
settings alone, with no engine and nothing written."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.manager import KernelManager

from nbcontainers.catalog.entries import load_catalog
from nbcontainers.errors import ConfigError, Unsupported
from nbcontainers.kernels.connection import PrivateDir, connection_for_container
from nbcontainers.kernels.identity import Host, kernel_user
from nbcontainers.kernels.plan import (
    CONNECTION_FILE,
    HOME,
    PIP_CONF,
    SHARED,
    KernelStart,
    LaunchConfig,
    LaunchPlan,
    plan_launch,
)
from nbcontainers.kernels.provisioner import ContainerProvisioner
from nbcontainers.labels import KERNEL_ID, OWNER, PRIVATE_DIR
from nbcontainers.pipsettings import PipSettings
from nbcontainers.runtimes.base import LIMITS, EngineFacts, GPURequest
from nbcontainers.runtimes.fake import FakeRuntime

HOST = Host(owner="ada", uid=1000, gid=1000, hostname="h", pid=42, started="7")
ROOT = Host(owner="root", uid=0, gid=0, hostname="h", pid=42, started="7")


@pytest.fixture(autouse=True)
def _no_host_accounts(monkeypatch: pytest.MonkeyPatch) -> None:
    """The plan sees only the environment each test gives (HOME, XDG_DATA_HOME), never this
    machine's passwd entries: without a HOME there is no lasting home (tests/kernels/
    test_home_unit.py tests that)."""
    monkeypatch.setattr("nbcontainers.kernels.home._passwd", lambda uid: None)
    monkeypatch.setattr("nbcontainers.kernels.home._group", lambda gid: "")


def _facts(
    limits: tuple[str, ...] = LIMITS, gpu_mode: str = "device-requests", rootless: bool = False
) -> EngineFacts:
    return EngineFacts(
        name="podman" if rootless else "docker",
        version="4.3",
        api_version="1.41",
        endpoint="unix:///run/podman.sock",
        os="linux",
        rootless=rootless,
        gpu_mode=gpu_mode,
        limits=frozenset(limits),
    )


def _no_pip(env: Mapping[str, str]) -> PipSettings:
    return PipSettings()


def _plan(
    tmp_path: Path,
    server_env: Mapping[str, str] | None = None,
    *,
    facts: EngineFacts | None = None,
    host: Host = HOST,
    gpus: GPURequest | None = None,
    image: str = "python",
    read_pip: Any = _no_pip,
    spec_env: frozenset[str] = frozenset(),
    ports: tuple[int, ...] = (),
    **config: Any,
) -> LaunchPlan:
    workspace = tmp_path / "work"
    workspace.mkdir(exist_ok=True)
    kernel = KernelStart(
        kernel_id="0123456789ab",
        command=("python3", "-m", "ipykernel_launcher", "-f", CONNECTION_FILE),
        cwd=str(workspace),
        env=dict(server_env or {}),
        private_dir=PrivateDir(tmp_path / "nbc-private"),
        spec_env=spec_env,
        ports=ports,
        started_at=1_700_000_123.0,
    )
    return plan_launch(
        LaunchConfig(**config),
        kernel,
        load_catalog(include_user=False)[image],
        facts or _facts(),
        host,
        gpus,
        read_pip=read_pip,
    )


# -- mounts -------------------------------------------------------------------------------


def test_mounts_connection_file_sockets_and_workspace(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    private = PrivateDir(tmp_path / "nbc-private")
    by_target = {m.target: m for m in plan.mounts}
    conn = by_target[CONNECTION_FILE]
    assert conn.source == str(private.connection_file) and conn.read_only
    sockets = by_target[str(private.sockets)]  # same path on both sides, writable
    assert sockets.source == str(private.sockets) and not sockets.read_only
    workspace = str((tmp_path / "work").resolve())
    assert by_target[workspace].source == workspace and not by_target[workspace].read_only
    assert plan.working_dir == workspace
    assert not any("docker.sock" in m.source for m in plan.mounts)


def test_tcp_mounts_no_socket_folder(tmp_path: Path) -> None:
    plan = _plan(tmp_path, transport="tcp", ports=(5001, 5002, 5003, 5004, 5005))
    assert str(PrivateDir(tmp_path / "nbc-private").sockets) not in {m.target for m in plan.mounts}


@pytest.mark.parametrize("cwd", ["/", "/etc", "/usr"])
def test_too_broad_workspace_is_not_mounted(tmp_path: Path, cwd: str) -> None:
    kernel = KernelStart("k", ("python3",), cwd, {}, PrivateDir(tmp_path / "p"))
    image = load_catalog(include_user=False)["python"]
    plan = plan_launch(LaunchConfig(), kernel, image, _facts(), HOST, read_pip=_no_pip)
    assert all(m.target != cwd for m in plan.mounts)
    assert plan.working_dir == HOME
    assert any("too broad" in note for note in plan.notes)
    assert _plan(tmp_path).notes == ()


def test_workspace_mount_can_be_turned_off(tmp_path: Path) -> None:
    plan = _plan(tmp_path, mount_workspace=False)
    assert plan.working_dir == HOME
    assert {m.target for m in plan.mounts} == {
        CONNECTION_FILE,
        str(PrivateDir(tmp_path / "nbc-private").sockets),
        PIP_CONF,
    }


def test_extra_mounts_are_parsed_read_only_by_default(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    rw = {"source": str(data), "target": "/rw", "read_only": False}
    plan = _plan(tmp_path, extra_mounts=(f"{data}:/data", rw))
    by_target = {m.target: m for m in plan.mounts}
    assert by_target["/data"].read_only and by_target["/data"].source == str(data)
    assert not by_target["/rw"].read_only
    with pytest.raises(ConfigError, match="extra_mounts"):
        _plan(tmp_path, extra_mounts=("/nowhere/at/all:/x",))


def test_pip_settings_become_a_private_pip_conf_and_read_only_mounts(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    cert = tmp_path / "ca.pem"
    cert.write_text("CA")
    seen: list[Mapping[str, str]] = []

    def read_pip(env: Mapping[str, str]) -> PipSettings:
        seen.append(dict(env))
        return PipSettings(index_url="https://pypi.example/simple", find_links=(str(wheels),))

    plan = _plan(
        tmp_path,
        {"PIP_CONFIG_FILE": "/host/pip.conf", "SSL_CERT_FILE": str(cert)},
        read_pip=read_pip,
    )
    assert "PIP_CONFIG_FILE" not in seen[0]  # the host's path means nothing inside
    assert plan.env["PIP_CONFIG_FILE"] == PIP_CONF
    assert plan.pip_conf is not None and "index-url = https://pypi.example/simple" in plan.pip_conf
    by_target = {m.target: m for m in plan.mounts}
    assert by_target[PIP_CONF].source == str(PrivateDir(tmp_path / "nbc-private").pip_conf)
    assert by_target[str(wheels)].read_only
    assert by_target[str(cert)].read_only  # the CA bundle the environment points at
    no_pip = _plan(tmp_path, pip_settings=False)
    assert no_pip.pip_conf is None and "PIP_CONFIG_FILE" not in no_pip.env


# -- environment --------------------------------------------------------------------------


def test_environment_is_an_allowlist_and_the_hub_token_never_passes(tmp_path: Path) -> None:
    server_env = {
        "JUPYTERHUB_API_TOKEN": "hub-secret-token-123",
        "JUPYTERHUB_API_URL": "http://hub:8081",
        "AWS_SECRET_ACCESS_KEY": "nope",
        "PATH": "/usr/local/bin:/usr/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HTTPS_PROXY": "http://proxy:3128",
        "FROM_SPEC": "kept",
        "HOME": "/home/ada",
    }
    plan = _plan(tmp_path, server_env, spec_env=frozenset({"FROM_SPEC"}), env={"MY": 42})
    assert "JUPYTERHUB_API_TOKEN" not in plan.env
    assert "hub-secret-token-123" not in plan.env.values()
    assert not {"JUPYTERHUB_API_URL", "AWS_SECRET_ACCESS_KEY", "PATH"} & set(plan.env)
    assert plan.env["LANG"] == plan.env["LC_ALL"] == "C.UTF-8"  # names and globs
    assert plan.env["HTTPS_PROXY"] == "http://proxy:3128"
    assert plan.env["FROM_SPEC"] == "kept"  # the kernelspec's own variables pass
    assert plan.env["MY"] == "42"  # the env setting, as strings
    # The user's home path (a lasting folder mounted there: test_home_unit.py), not the server's.
    assert plan.env["HOME"] == "/home/ada" and plan.env["NBCONTAINERS_IMAGE"] == "python"
    assert plan.env["USER"] == plan.env["LOGNAME"] == "ada"
    assert plan.env["PYTHONUNBUFFERED"] == "1"


def test_allowlist_setting_replaces_the_default(tmp_path: Path) -> None:
    plan = _plan(tmp_path, {"LANG": "C", "MY_TEAM_X": "1"}, env_allowlist=("MY_TEAM_*",))
    assert plan.env["MY_TEAM_X"] == "1" and "LANG" not in plan.env


# -- user ---------------------------------------------------------------------------------


def test_user_is_the_servers_own_by_default(tmp_path: Path) -> None:
    assert _plan(tmp_path).user == "1000:1000"
    assert _plan(tmp_path, user="1000:1000").user == "1000:1000"


def test_another_user_needs_a_root_server_and_numeric_ids(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="only a server running as root"):
        _plan(tmp_path, user="12345:12345")
    assert _plan(tmp_path, user="12345:12345", host=ROOT).user == "12345:12345"
    for bad in ("ada", "1000", "1000:staff"):
        with pytest.raises(ConfigError, match="numeric 'uid:gid'"):
            kernel_user(bad, ROOT)


def test_on_a_rootless_engine_the_kernel_is_the_containers_root(tmp_path: Path) -> None:
    # The container's root is the server's own user there: files it writes are the user's.
    rootless = _facts(rootless=True)
    assert _plan(tmp_path, facts=rootless).user == "0:0"
    assert _plan(tmp_path, facts=rootless, user="1000:1000").user == "0:0"
    with pytest.raises(ConfigError, match="on a rootless engine kernels run as you"):
        _plan(tmp_path, facts=rootless, user="12345:12345")


# -- network, labels, name ----------------------------------------------------------------


def test_ipc_joins_the_shared_namespace_once_resolved(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    assert plan.network == SHARED and plan.ports == {}
    with pytest.raises(ValueError, match="shared network"):
        plan.container_spec()
    spec = plan.container_spec("container:abc")
    assert spec.network_mode == "container:abc"
    assert _plan(tmp_path, network="none").container_spec().network_mode == "none"


def test_tcp_publishes_on_loopback_in_its_own_namespace(tmp_path: Path) -> None:
    ports = (5001, 5002, 5003, 5004, 5005)
    plan = _plan(tmp_path, transport="tcp", ports=ports)
    assert plan.network == "bridge"  # 'shared' means a namespace of its own with tcp
    assert plan.ports == {p: ("127.0.0.1", p) for p in ports}
    host_net = _plan(tmp_path, transport="tcp", network="host", ports=ports)
    assert host_net.network == "host" and host_net.ports == {}


def test_connection_file_inside_listens_where_the_ports_are_published() -> None:
    info = {"ip": "127.0.0.1", "key": b"secret", "transport": "tcp", "shell_port": 5001}
    inside = connection_for_container(info, "tcp", "bridge")
    assert inside["ip"] == "0.0.0.0" and inside["key"] == "secret"
    assert connection_for_container(info, "tcp", "host")["ip"] == "127.0.0.1"
    ipc = {"ip": "/tmp/nbc-x/s/k", "transport": "ipc"}
    assert connection_for_container(ipc, "ipc", "shared")["ip"] == "/tmp/nbc-x/s/k"


def test_labels_name_and_safety_of_the_spec(tmp_path: Path) -> None:
    spec = _plan(tmp_path).container_spec("container:abc")
    assert spec.labels[KERNEL_ID] == "0123456789ab" and spec.labels[OWNER] == "ada"
    assert spec.labels[PRIVATE_DIR] == str(tmp_path / "nbc-private")
    assert spec.labels["io.nbcontainers.image"] == "python"
    assert spec.name == "nbc-python-01234567-123"
    assert spec.cap_drop == ("ALL",) and spec.init and "no-new-privileges" in spec.security_opt
    assert spec.tmpfs == {HOME: "rw,exec,mode=1777,size=4g"}
    assert spec.command[-1] == CONNECTION_FILE


# -- limits and GPUs against the engine's facts -------------------------------------------


def test_limits_are_passed_where_the_engine_enforces_them(tmp_path: Path) -> None:
    spec = _plan(tmp_path, mem_limit="1g", cpus=1.5).container_spec("container:abc")
    assert (spec.mem_limit, spec.nano_cpus) == ("1g", 1_500_000_000)
    assert (spec.shm_size, spec.pids_limit) == ("2g", 4096)
    assert spec.limits() == frozenset(LIMITS)


def test_limit_the_engine_cannot_enforce_is_refused_by_name(tmp_path: Path) -> None:
    facts = _facts(limits=("shm",), rootless=True)  # rootless on cgroup v1
    with pytest.raises(Unsupported) as info:
        _plan(tmp_path, facts=facts, mem_limit="1g", cpus=2.0)
    message = str(info.value)
    assert "memory (mem_limit='1g')" in message and "cpus (cpus=2.0)" in message
    assert "podman engine" in message and "rootless" in message
    assert "it enforces: shm" in message and "cgroup v2" in message
    with pytest.raises(Unsupported, match=r"pids \(pids_limit=100\)"):
        _plan(tmp_path, facts=facts, pids_limit=100)


def test_default_limits_nobody_asked_for_are_left_out_with_a_note(tmp_path: Path) -> None:
    plan = _plan(tmp_path, facts=_facts(limits=("shm",)))
    spec = plan.container_spec("container:abc")
    assert spec.pids_limit is None and spec.shm_size == "2g"
    assert any("pids_limit=4096 is not applied" in note for note in plan.notes)
    none = _plan(tmp_path, facts=_facts(limits=()), shm_size="").container_spec("c:x")
    assert none.limits() <= frozenset()


def test_gpus_on_an_engine_without_gpu_support_are_refused(tmp_path: Path) -> None:
    gpus = GPURequest(count=-1)
    with pytest.raises(Unsupported, match="can't hand GPUs to a container"):
        _plan(tmp_path, facts=_facts(gpu_mode="none"), gpus=gpus, image="pytorch-gpu")
    plan = _plan(tmp_path, gpus=gpus, image="pytorch-gpu")
    assert plan.container_spec("container:abc").gpus == gpus


# -- the provisioner hands the plan to the runtime, or refuses before it ------------------


def _start(prov: ContainerProvisioner, cwd: Path) -> None:
    async def go() -> None:
        kw = await prov.pre_launch(cwd=str(cwd))
        await prov.launch_kernel(kw.pop("cmd"), **kw)

    asyncio.run(go())


def test_provisioner_refuses_unenforceable_limit_before_starting(tmp_path: Path) -> None:
    images = [image.ref for image in load_catalog(include_user=False).values()]
    fake = FakeRuntime(images=images, limits=("shm", "pids"))
    km = KernelManager(kernel_name="nbc-python")
    prov = ContainerProvisioner(
        kernel_id="k-lim", kernel_spec=km.kernel_spec, parent=km, image="python", mem_limit="1g"
    )
    prov.runtime = fake
    with pytest.raises(Unsupported, match=r"memory \(mem_limit='1g'\)"):
        _start(prov, tmp_path)
    assert fake.specs == []  # not even the network holder
    assert prov.container_id is None and prov.private_dir is None  # nothing left behind


def test_provisioner_writes_the_private_files_the_plan_names(
    tmp_path: Path, fake_runtime: FakeRuntime
) -> None:
    km = KernelManager(kernel_name="nbc-python")
    prov = ContainerProvisioner(
        kernel_id="k-files", kernel_spec=km.kernel_spec, parent=km, image="python"
    )
    prov.runtime = fake_runtime
    _start(prov, tmp_path)
    assert prov.private_dir is not None
    private = PrivateDir(prov.private_dir)
    for path in (private.connection_file, private.pip_conf):
        assert path.stat().st_mode & 0o777 == 0o600, path
    assert private.path.stat().st_mode & 0o777 == 0o700
    asyncio.run(prov.cleanup())
    assert not private.path.exists()
