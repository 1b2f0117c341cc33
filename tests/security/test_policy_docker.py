"""The admin's policy on the real Docker engine: a user's bypass attempts (a memory limit the
engine reads as none, a process cap of 0, GPUs by environment, the host network, /etc
mounted read-write, a 512g /dev/shm) never become a container, the container a plain start
makes carries the policy's limits as the engine reports them, and a warm pool's members
count against max_kernels_per_user."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.manager import KernelManager

from nbcontainers.errors import ConfigError
from nbcontainers.kernels import policy as policy_module
from nbcontainers.kernels.pool import kernel_pool
from nbcontainers.labels import KERNEL_ID, OWNER

from ..drive import connected, run

pytestmark = [pytest.mark.docker, pytest.mark.timeout(300)]

GiB = 1 << 30


@pytest.fixture
def policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    def write(rules: dict[str, Any]) -> None:
        path = tmp_path / "policy.json"
        path.write_text(json.dumps(rules))
        path.chmod(0o644)
        monkeypatch.setattr(policy_module, "POLICY_FILE", path)

    return write


@pytest.fixture
def pool(python_image: str) -> Iterator[Any]:
    yield kernel_pool()
    kernel_pool().drain()
    kernel_pool().reopen()


def _start(cwd: Path, **config: Any) -> KernelManager:
    km = KernelManager(kernel_name="nbc-python")
    km.kernel_spec.metadata["kernel_provisioner"]["config"].update(config)
    km.start_kernel(cwd=str(cwd), env={**os.environ, "JPY_SESSION_NAME": ""})
    return km


def _mine(runtime: Any) -> list[Any]:
    """This user's kernel containers as the engine labels them (pool members included)."""
    owners = {s.labels.get(OWNER) for s in runtime.list({KERNEL_ID: None})}
    return [s for o in owners for s in runtime.list({OWNER: o, KERNEL_ID: None}) if s.running]


@pytest.mark.parametrize(
    "attempt",
    [
        {"mem_limit": "0.0001"},  # reached Docker as Memory=0: no limit
        {"mem_limit": "0g"},
        {"pids_limit": 0},  # reached Docker as no PidsLimit
        {"cpus": 1e-10},  # reached Docker as NanoCpus=0
        {"env": {"NVIDIA_VISIBLE_DEVICES": "all"}},
        {"network": "host", "transport": "tcp"},
        {"extra_mounts": ["/etc:/hostetc:rw"]},
        {"shm_size": "512g"},
    ],
)
def test_a_bypass_attempt_never_becomes_a_container(
    attempt: dict[str, Any], policy: Any, runtime: Any, python_image: str, tmp_path: Path
) -> None:
    policy({"max_mem_limit": "1g", "max_cpus": 1, "allowed_gpus": []})
    before = {s.id for s in runtime.list({KERNEL_ID: None})}
    km = None
    try:
        with pytest.raises(
            ConfigError, match=r"max_|allowed_|no memory limit|no process|cpus=|steers"
        ):
            km = _start(tmp_path, **attempt)
    finally:
        if km is not None and km.has_kernel:
            # The attack got through: say what the engine was given before removing it.
            host = runtime.api.inspect_container(km.provisioner.container_id)["HostConfig"]
            km.shutdown_kernel(now=True)
            keys = ("Memory", "PidsLimit", "NanoCpus", "ShmSize", "NetworkMode", "Binds")
            pytest.fail(f"{attempt} started a kernel: { ({k: host[k] for k in keys}) }")
    assert {s.id for s in runtime.list({KERNEL_ID: None})} == before


def test_a_plain_start_gets_the_policys_limits_from_the_engine(
    policy: Any, runtime: Any, python_image: str, tmp_path: Path
) -> None:
    policy({"max_mem_limit": "1g", "max_cpus": 1, "max_pids_limit": 512})
    km = _start(tmp_path)
    try:
        data = runtime.api.inspect_container(km.provisioner.container_id)
        host = data["HostConfig"]
        assert host["Memory"] == GiB and host["NanoCpus"] == 1_000_000_000
        assert host["PidsLimit"] == 512
        assert 0 < host["ShmSize"] <= GiB  # the 2g default shrank to the memory cap
        assert "size=1g" in host["Tmpfs"]["/home/nbc"]  # so did the 4g HOME
        assert "NVIDIA_VISIBLE_DEVICES=void" in data["Config"]["Env"]  # no GPU granted
    finally:
        km.shutdown_kernel(now=True)


def test_pool_members_count_against_max_kernels_per_user(
    policy: Any, pool: Any, runtime: Any, tmp_path: Path
) -> None:
    policy({"max_kernels_per_user": 2})
    config = {"pool_size": 1, "workspace_root": str(tmp_path)}
    started = [_start(tmp_path, **config)]
    try:
        assert pool.wait_ready(1, timeout=60)  # one kernel and one idle member: the most
        assert len(_mine(runtime)) == 2
        started.append(_start(tmp_path, **config))  # takes the idle member: still two
        assert started[-1].provisioner._pooled is not None
        time.sleep(3)  # the pool would refill now, past the limit
        assert len(_mine(runtime)) == 2, [s.name for s in _mine(runtime)]
        # The handed-out kernel marks its socket folder "waiting", which once took it out
        # of the count: a third kernel would have started.
        code = (
            "import json, os; ip = json.load(open('/run/nbcontainers/kernel.json'))['ip']; "
            "open(os.path.join(os.path.dirname(ip), 'wait'), 'w').close()"
        )
        with connected(started[-1]) as kc:
            _, reply = run(kc, code)
        assert reply["status"] == "ok"
        with pytest.raises(ConfigError, match=r"already runs 2 container kernels"):
            started.append(_start(tmp_path, **config))
        assert len(_mine(runtime)) == 2
    finally:
        for km in started:
            if km.has_kernel:
                km.shutdown_kernel(now=True)
