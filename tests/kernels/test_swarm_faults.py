"""What a Swarm kernel start says when it can't work: no node meets the placement, GPUs on a
swarm without generic resources, a workspace missing on the node, a node this server can't
reach; and a worker that dies mid-session gives "kernel died" with the reason. Each fails at
start with the fix named, never a start timeout, and leaves no service behind."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from jupyter_client.manager import KernelManager
from traitlets.config import Config

from nbcontainers.errors import RuntimeFailure, Unsupported
from nbcontainers.labels import KERNEL_ID
from tests.kernels.swarm_kernels import kernel, run_cell, start_kernel
from tests.swarmnet import ON_WORKER, WORKER, ensure_swarm, on_worker

pytestmark = pytest.mark.docker


def test_a_constraint_no_node_meets_fails_at_once(swarm: object) -> None:
    with pytest.raises(Unsupported, match="No node of this swarm can run the kernel") as info:
        start_kernel(placement=("node.labels.gpu==true",))
    assert "node.labels.gpu==true" in str(info.value)
    assert "docker node update --label-add" in str(info.value)
    assert swarm.list({KERNEL_ID: None}) == []  # type: ignore[attr-defined]


def test_gpus_on_a_swarm_without_generic_resources(swarm: object) -> None:
    with pytest.raises(Unsupported, match="NVIDIA-GPU") as info:
        start_kernel(gpus=1)
    assert "node-generic-resources" in str(info.value)  # the fix: what a GPU node needs
    assert swarm.list({KERNEL_ID: None}) == []  # type: ignore[attr-defined]


def test_a_workspace_missing_on_the_node(swarm: object, tmp_path: Path) -> None:
    config = Config()
    config.ContainerProvisioner.runtime_name = "swarm"
    config.ContainerProvisioner.placement = [ON_WORKER]
    km = KernelManager(kernel_name="nbc-python", config=config)
    with pytest.raises(RuntimeFailure, match="same path on every node") as info:
        km.start_kernel(cwd=str(tmp_path))  # this host's folder: no node has it
    assert WORKER in str(info.value) and str(tmp_path) in str(info.value)
    assert swarm.list({KERNEL_ID: None}) == []  # type: ignore[attr-defined]


def test_a_node_this_server_cannot_reach(swarm: object) -> None:
    # The node drops new connections from this host to its published ports (a firewall).
    rule = ["-s", "172.17.0.1", "-p", "tcp", "--syn", "--dport", "10000:65535", "-j", "DROP"]
    assert on_worker("iptables", "-t", "raw", "-I", "PREROUTING", *rule).returncode == 0
    try:
        with pytest.raises(RuntimeFailure, match="can't reach the kernel on node") as info:
            start_kernel()
    finally:
        on_worker("iptables", "-t", "raw", "-D", "PREROUTING", *rule)
    assert WORKER in str(info.value) and "firewall" in str(info.value)
    assert swarm.list({KERNEL_ID: None}) == []  # type: ignore[attr-defined]


def test_a_worker_that_dies_mid_session(swarm: object, swarm_images: list[str]) -> None:
    try:
        with kernel() as (km, kc):
            assert run_cell(kc, "print('alive')") == ("ok", "alive\n")
            service = km.provisioner.container_id  # type: ignore[union-attr]
            subprocess.run(["docker", "kill", WORKER], check=True, capture_output=True)
            deadline = time.monotonic() + 90  # the managers wait for missed heartbeats
            while km.is_alive() and time.monotonic() < deadline:
                time.sleep(0.5)
            assert not km.is_alive(), "the kernel on a dead node still counts as alive"
            report = km.provisioner.last_crash  # type: ignore[union-attr]
            assert report is not None and f"node {WORKER}" in report and "down" in report
        assert swarm.state(service) is None  # type: ignore[attr-defined]
        assert swarm.list({KERNEL_ID: None}) == []  # type: ignore[attr-defined]
    finally:
        ensure_swarm(swarm_images)  # the worker back for whatever runs next
