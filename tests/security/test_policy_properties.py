"""Property-based tests of the admin's policy: for any settings a user can write and any
valid policy, either the start is refused with a ConfigError (or Unsupported), or the
``ContainerSpec`` the engine receives has every limit set, above the engine's minimum (never
a value it reads as "unlimited") and under the policy's caps, a network and mounts the
policy allows, no variable that steers the runtime, and sizes every engine client reads as
the same number. The same holds for the spec the fake engine records when a real
provisioner starts the kernel, and for kernel counts with a warm pool."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Mapping
from dataclasses import replace
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pytest
from docker.utils import parse_bytes
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from jupyter_client.manager import KernelManager

from nbcontainers.catalog.entries import load_catalog
from nbcontainers.errors import ConfigError, ContainerNotFound, Unsupported
from nbcontainers.kernels import policy as policy_module
from nbcontainers.kernels.connection import PrivateDir
from nbcontainers.kernels.guards import RUNTIME_ENV
from nbcontainers.kernels.identity import Host
from nbcontainers.kernels.limits import MIN_MEMORY, MIN_NANO_CPUS, MIN_TMPFS, size_bytes
from nbcontainers.kernels.plan import CONNECTION_FILE, HOME, KernelStart, LaunchConfig, plan_launch
from nbcontainers.kernels.policy import DEFAULT_NETWORKS, Policy, mount_rule
from nbcontainers.kernels.policy_rules import apply_policy
from nbcontainers.kernels.pool import kernel_pool
from nbcontainers.kernels.provisioner import ContainerProvisioner
from nbcontainers.labels import KERNEL_ID, OWNER
from nbcontainers.pipsettings import PipSettings
from nbcontainers.runtimes import fake as fake_module
from nbcontainers.runtimes.base import LIMITS, ContainerSpec, EngineFacts
from nbcontainers.runtimes.fake import FakeRuntime
from nbcontainers.runtimes.kubernetes import pods as k8s_pods
from nbcontainers.runtimes.swarm import wire as swarm_wire

from .test_policy_attacks import launchers

HOST = Host(owner="ada", uid=os.getuid(), gid=os.getgid(), hostname="h", pid=1, started="1")
FACTS = EngineFacts("docker", "20.10", "1.41", "unix://x", "linux", False, "none", LIMITS)
IMAGE = load_catalog(include_user=False)["python"]
HOLDER = "container:holder"
ENGINE_SHM = 64 << 20

sizes = st.one_of(
    st.sampled_from(["", "0", "0g", "0.0001", "-1", "-1g", "1k", "6m", "5m", "1.5g", "1t", "x"]),
    st.builds(
        "{}{}".format,
        st.one_of(st.integers(-3, 2**40), st.floats(0, 4096, allow_nan=False).map("{:.5f}".format)),
        st.sampled_from(["", "b", "k", "m", "g", "t", "kb", "mb", "gb", " g"]),
    ),
)
cpus = st.one_of(
    st.sampled_from([0.0, 1e-10, 0.001, 0.0099, 0.01, 1.0, 64.0, -1.0]),
    st.floats(allow_nan=True, allow_infinity=True),
)
runtime_env = st.dictionaries(
    st.sampled_from(
        [
            "NVIDIA_VISIBLE_DEVICES",
            "NVIDIA_DRIVER_CAPABILITIES",
            "NVIDIA_REQUIRE_CUDA",
            "AMD_VISIBLE_DEVICES",
            "HABANA_VISIBLE_DEVICES",
            "CUDA_VISIBLE_DEVICES",
            "LD_PRELOAD",
            "MY_VAR",
        ]
    ),
    st.sampled_from(["all", "0", "void"]),
    max_size=3,
)
networks = st.sampled_from(["shared", "bridge", "none", "host", "container:other", "mynet"])
policy_sizes = st.sampled_from(["", "8m", "64m", "512m", "1g", "8g"])


@st.composite
def policies(draw: Any) -> Policy:
    if not draw(st.booleans()):
        return Policy()  # no policy file
    return Policy(
        source="/etc/nbcontainers/policy.json",
        default_mem_limit=draw(st.sampled_from(["", "64m", "2g", "16g"])),
        max_mem_limit=draw(policy_sizes),
        default_cpus=draw(st.sampled_from([0.0, 0.5, 2.0])),
        max_cpus=draw(st.sampled_from([0.0, 0.25, 1.0, 4.0])),
        max_pids_limit=draw(st.sampled_from([0, 64, 4096, 100000])),
        max_shm_size=draw(policy_sizes),
        max_tmpfs_size=draw(policy_sizes),
        allowed_networks=draw(st.sampled_from([None, ("bridge",), ("none", "host"), ()])),
        allowed_mounts=draw(st.sampled_from([None, (), ("/usr/share",), ("/usr/share:rw",)])),
        denied_env=draw(st.sampled_from([(), ("MY_*",)])),
    )


@st.composite
def configs(draw: Any) -> dict[str, Any]:
    """Settings a user writes: each one usually sane, one time in four hostile."""

    def pick(sane: Any, hostile: Any) -> Any:
        return draw(hostile if draw(st.integers(0, 3)) == 0 else sane)

    good_sizes = st.sampled_from(["", "64m", "512m", "1g", "2g", "1.5g", "8g"])
    return {
        "mem_limit": pick(good_sizes, sizes),
        "cpus": pick(st.sampled_from([0.0, 0.5, 1.0, 2.0]), cpus),
        "pids_limit": pick(st.sampled_from([4096, 64, 100000]), st.integers(-2, 200000)),
        "shm_size": pick(st.sampled_from(["2g", "", "64m", "256m"]), sizes),
        "home_size": pick(st.sampled_from(["4g", "512m", "1g"]), sizes),
        "network": pick(st.sampled_from(["shared", "bridge", "none"]), networks),
        "env": pick(st.just({}), runtime_env),
        "extra_mounts": pick(
            st.just([]),
            st.lists(
                st.sampled_from(
                    ["/usr/share:/s", "/usr/share:/s:rw", "/etc:/hostetc:rw", "/etc:/e:ro"]
                ),
                max_size=2,
            ),
        ),
    }


def _caps(policy: Policy) -> dict[str, int | None]:
    def size(rule: str) -> int | None:
        value = getattr(policy, rule)
        return size_bytes(value) if value else None

    mem = size("max_mem_limit")
    return {
        "mem": mem,
        "shm": min((c for c in (size("max_shm_size"), mem) if c), default=None),
        "home": min((c for c in (size("max_tmpfs_size"), mem) if c), default=None),
    }


def _every_engine_reads(size: str) -> int:
    """What docker-py, the Swarm wire format, Kubernetes quantities and the fake engine make
    of ``size``: one number, or the test fails."""
    docker = int(parse_bytes(size))
    swarm = swarm_wire._bytes(size)
    fake = fake_module._bytes(size)
    k8s_pods.quantity(size)  # parses, or raises
    assert docker == swarm == fake, (size, docker, swarm, fake)
    return docker


def assert_within_policy(spec: ContainerSpec, policy: Policy, config: Mapping[str, Any]) -> None:
    """Everything the engine receives is a real limit, under the policy's caps."""
    caps = _caps(policy)
    assert spec.mem_limit is not None or caps["mem"] is None
    if spec.mem_limit is not None:
        mem = _every_engine_reads(spec.mem_limit)
        assert mem >= MIN_MEMORY
        assert caps["mem"] is None or mem <= caps["mem"]
    if spec.nano_cpus is not None:
        assert spec.nano_cpus >= MIN_NANO_CPUS
    if policy.max_cpus:
        assert spec.nano_cpus is not None and spec.nano_cpus <= policy.max_cpus * 1e9
    assert spec.pids_limit is not None and spec.pids_limit > 0
    assert not policy.max_pids_limit or spec.pids_limit <= policy.max_pids_limit
    if spec.shm_size is None:
        assert caps["shm"] is None or caps["shm"] >= ENGINE_SHM
    else:
        shm = _every_engine_reads(spec.shm_size)
        assert shm >= MIN_TMPFS and (caps["shm"] is None or shm <= caps["shm"])
    options = dict(o.split("=", 1) for o in spec.tmpfs[HOME].split(",") if "=" in o)
    home = _every_engine_reads(options["size"])
    assert home >= MIN_TMPFS and (caps["home"] is None or home <= caps["home"])
    if policy.active:
        allowed = policy.allowed_networks
        allowed = DEFAULT_NETWORKS if allowed is None else allowed
        mode = spec.network_mode
        assert mode in allowed or (mode == HOLDER and "shared" in allowed), mode
        rules = [mount_rule(e, "") for e in (policy.allowed_mounts or ("~:rw",))]
        for mount in spec.mounts:
            if mount.target in ("/s", "/hostetc", "/e"):
                real = os.path.realpath(mount.source)
                inside = [rw for f, rw in rules if (real + "/").startswith(f.rstrip("/") + "/")]
                assert inside and (mount.read_only or any(inside)), (mount, rules)
    for name, value in spec.env.items():
        if any(fnmatch(name, p) for p in (*RUNTIME_ENV, *policy.denied_env)):
            assert (name, value) == ("NVIDIA_VISIBLE_DEVICES", "void"), (name, value)


def _no_pip(env: Mapping[str, str]) -> PipSettings:
    return PipSettings()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policy=policies(), config=configs())
def test_no_setting_reaches_the_engine_unlimited_or_over_the_caps(
    policy: Policy, config: dict[str, Any]
) -> None:
    kernel = KernelStart(
        kernel_id="k",
        command=("python3", "-m", "ipykernel_launcher", "-f", CONNECTION_FILE),
        cwd=None,
        env={"NVIDIA_VISIBLE_DEVICES": "all", "LANG": "C"},  # the server's own
        private_dir=PrivateDir(Path("/nonexistent/nbc-private")),
    )
    try:
        checked, gpus = apply_policy(policy, LaunchConfig(**config), IMAGE, None, admin={})
        plan = plan_launch(
            checked, kernel, IMAGE, FACTS, HOST, gpus, _no_pip, refused_env=policy.denied_env
        )
    except (ConfigError, Unsupported):
        event("refused")
        return  # refused before anything ran: what a broken rule must do
    event("started")
    assert_within_policy(plan.container_spec(HOLDER), policy, config)


# -- the same through the provisioner: what the (fake) engine records -----------------------


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(policy=policies(), config=configs())
def test_the_engine_receives_only_specs_within_the_policy(
    policy: Policy,
    config: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = tmp_path / "policy.json"
    rules = {k: v for k, v in vars(policy).items() if k != "source" and v not in ("", 0, 0.0)}
    rules = {k: list(v) if isinstance(v, tuple) else v for k, v in rules.items() if v is not None}
    if policy.active:
        path.write_text(json.dumps(rules))
        path.chmod(0o644)
    elif path.exists():
        path.unlink()
    monkeypatch.setattr(policy_module, "POLICY_FILE", path)
    fake = FakeRuntime(images=[IMAGE.ref])
    km = KernelManager(kernel_name="nbc-python")
    transport = "tcp" if config["network"] in ("host", "bridge") else "ipc"
    prov = ContainerProvisioner(
        kernel_id="k", kernel_spec=km.kernel_spec, parent=km, image="python",
        transport=transport, **config,
    )  # fmt: skip
    prov.runtime = fake

    async def go() -> None:
        kw = await prov.pre_launch(cwd=str(tmp_path))
        await prov.launch_kernel(kw.pop("cmd"), **kw)

    try:
        asyncio.run(go())
    except (ConfigError, Unsupported, ContainerNotFound):
        event("refused")
        assert not [s for s in fake.specs if KERNEL_ID in s.labels]  # nothing started
        return
    finally:
        asyncio.run(prov.cleanup())
    event("started")
    [spec] = [s for s in fake.specs if KERNEL_ID in s.labels]
    if spec.network_mode and spec.network_mode.startswith("container:"):
        spec = replace(spec, network_mode=HOLDER)
    assert_within_policy(spec, policy, config)


# -- counts ---------------------------------------------------------------------------------


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    most=st.integers(1, 3),
    pool_size=st.integers(0, 3),
    starts=st.lists(st.sampled_from(["start", "stop", "fake-idle"]), min_size=1, max_size=6),
)
def test_kernels_and_pool_members_never_exceed_max_kernels_per_user(
    most: int,
    pool_size: int,
    starts: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps({"max_kernels_per_user": most}))
    path.chmod(0o644)
    monkeypatch.setattr(policy_module, "POLICY_FILE", path)
    fake = FakeRuntime(images=[IMAGE.ref])
    launchers(fake)
    running: list[ContainerProvisioner] = []
    try:
        for n, step in enumerate(starts):
            if step == "stop" and running:
                asyncio.run(running.pop(0).cleanup())
            elif step == "fake-idle":  # a handed-out kernel pretends to be idle
                for s in fake.list({KERNEL_ID: None}):
                    folder = Path(s.labels.get("io.nbcontainers.private-dir", "/-")) / "s"
                    if s.running and folder.is_dir():
                        (folder / "wait").touch(exist_ok=True)
            else:
                km = KernelManager(kernel_name="nbc-python")
                prov = ContainerProvisioner(
                    kernel_id=f"k-{n}", kernel_spec=km.kernel_spec, parent=km, image="python",
                    pool_size=pool_size, workspace_root=str(tmp_path),
                )  # fmt: skip
                prov.runtime = fake

                async def go(p: ContainerProvisioner = prov) -> None:
                    kw = await p.pre_launch(cwd=str(tmp_path))
                    await p.launch_kernel(kw.pop("cmd"), **kw)

                try:
                    asyncio.run(go())
                    running.append(prov)
                except ConfigError as exc:
                    assert "max_kernels_per_user" in str(exc)
            time.sleep(0.15)  # the pool fills behind a start
            owner = policy_module.owner_name()
            mine = [s for s in fake.list({OWNER: owner, KERNEL_ID: None}) if s.running]
            assert len(mine) <= most, [s.name for s in mine]
    finally:
        for prov in running:
            asyncio.run(prov.cleanup())
        kernel_pool().drain()
        kernel_pool().reopen()
