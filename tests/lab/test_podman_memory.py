"""Rootless Podman on cgroup v1 cannot account a container's memory: the endpoint's record
says unknown (None), never the figure of some other cgroup the engine's API hands back."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from nbcontainers.kernels.identity import Host
from nbcontainers.lab.collect import Collector
from nbcontainers.labels import KERNEL_ID, OWNER
from nbcontainers.runtimes import ContainerSpec

from ..conftest import PODMAN_IMAGE
from .bare import bare_server

pytestmark = pytest.mark.docker


def test_rootless_podman_memory_is_unknown(podman_runtime: Any) -> None:
    facts = podman_runtime.ping()
    labels = {KERNEL_ID: "lab-podman-test", OWNER: Host.current().owner}
    cid = podman_runtime.run(
        ContainerSpec(PODMAN_IMAGE, ("sleep", "120"), labels=labels, network_mode="none")
    )
    collector = Collector(bare_server(), lambda: podman_runtime)
    try:
        [record] = [r for r in asyncio.run(collector.records()) if r["container_id"] == cid]
    finally:
        collector.close()
        podman_runtime.remove(cid)
    print(record)
    assert record["engine"] == "rootless Podman" and record["state"] == "running"
    if "memory" in facts.limits:  # a host with cgroup v2 delegation: real figures
        assert record["memory_used"] and record["memory_used"] > 0
    else:  # this machine (cgroup v1): unknown, not a wrong number
        assert record["memory_used"] is None and record["cpu_percent"] is None
