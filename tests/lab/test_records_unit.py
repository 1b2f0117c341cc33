"""The endpoint's records, the GPU figures and the owner scoping, on the fake runtime."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest

from nbcontainers.kernels.identity import Host
from nbcontainers.kernels.plan import IMAGE_LABEL
from nbcontainers.kernels.pooled import POOL_ROLE
from nbcontainers.lab.collect import Collector
from nbcontainers.lab.gpus import container_gpus, parse_query
from nbcontainers.lab.records import (
    engine_words,
    kernel_record,
    memory_limit,
    oom_advice,
    state_word,
    uptime,
)
from nbcontainers.labels import KERNEL_ID, OWNER, ROLE
from nbcontainers.runtimes.base import (
    ContainerSpec,
    ContainerState,
    ContainerStats,
    EngineFacts,
    ExecResult,
)

from .bare import bare_server

GIB = 1 << 30
FACTS = EngineFacts("docker", "27", "1.47", "unix:///x", "linux", False, "none", frozenset())


def _state(**kw: Any) -> ContainerState:
    base = ContainerState(
        id="c" * 64,
        name="nbc-python-1",
        image="nbcontainers/python:1",
        status="running",
        exit_code=None,
        oom_killed=False,
        labels={KERNEL_ID: "k1", OWNER: "ann", IMAGE_LABEL: "python"},
        started_at="2026-12-07T00:00:00.123456789Z",
    )
    return replace(base, **kw)


def test_memory_limit_is_none_without_a_cap_and_the_cap_with_one() -> None:
    host = 16 * GIB
    assert memory_limit(ContainerStats(1.0, GIB, host), host, remote=False) is None
    assert memory_limit(ContainerStats(1.0, GIB, 2 * GIB), host, remote=False) == 2 * GIB
    # A cluster node's memory is not this host's: its figure stands.
    assert memory_limit(ContainerStats(1.0, GIB, host), host, remote=True) == host
    assert memory_limit(ContainerStats(None, None, None), host, remote=False) is None


def test_oom_is_the_flag_or_sigkill_under_a_limit() -> None:
    dead = _state(status="exited", exit_code=137)
    assert state_word(dead, "512m") == "oom-killed"
    assert state_word(dead, "") == "exited"  # SIGKILL without a limit: someone killed it
    assert state_word(replace(dead, oom_killed=True), "") == "oom-killed"
    assert state_word(_state(), "512m") == "running"


def test_uptime_reads_engine_timestamps() -> None:
    assert uptime("2026-12-07T00:00:00.123456789Z", now=1796601610.2) == pytest.approx(10, abs=1)
    assert uptime("0001-01-01T00:00:00Z") is None
    assert uptime("garbage") is None


def test_engine_words() -> None:
    assert engine_words(FACTS, "") == "Docker"
    assert engine_words(replace(FACTS, name="podman", rootless=True), "") == "rootless Podman"
    assert engine_words(replace(FACTS, name="swarm"), "n1") == "Swarm node n1"
    assert engine_words(None, "") == "unknown engine"


def test_record_of_a_server_kernel_a_relayed_one_and_a_pool_member() -> None:
    stats = ContainerStats(12.5, 300 << 20, GIB)
    own = kernel_record(
        _state(),
        stats,
        facts=FACTS,
        digest="sha256:ab",
        gpus=[],
        known={"kernel_id": "server-k", "notebook": "a.ipynb", "mem_limit": "1g", "cpus": 2.0},
        parent=None,
        host=16 * GIB,
    )
    assert own["kernel_id"] == "server-k"  # the server's id, not the container's label
    assert (own["image"], own["notebook"], own["server_kernel"]) == ("python", "a.ipynb", True)
    assert (own["memory_used"], own["memory_limit"], own["cpu_limit"]) == (300 << 20, GIB, 2.0)
    relayed = kernel_record(
        _state(),
        stats,
        facts=FACTS,
        digest=None,
        gpus=None,
        known=None,
        parent={"kernel_id": "local-k", "notebook": "b.ipynb"},
        host=16 * GIB,
    )
    assert (relayed["relayed"], relayed["parent_kernel_id"], relayed["notebook"]) == (
        True,
        "local-k",
        "b.ipynb",
    )
    pooled = kernel_record(
        _state(labels={KERNEL_ID: "m1", OWNER: "ann", ROLE: POOL_ROLE}),
        None,
        facts=FACTS,
        digest=None,
        gpus=None,
        known=None,
        parent=None,
        host=16 * GIB,
    )
    assert pooled["pooled"] and pooled["memory_used"] is None


def test_an_exited_kernel_keeps_its_limit_and_drops_its_live_figures() -> None:
    record = kernel_record(
        _state(status="exited", exit_code=137),
        None,
        facts=FACTS,
        digest=None,
        gpus=None,
        known={"kernel_id": "k", "notebook": None, "mem_limit": "512m", "cpus": 0.0},
        parent=None,
        host=16 * GIB,
    )
    assert record["state"] == "oom-killed" and record["oom_killed"]
    assert record["memory_limit"] == 512 << 20  # from the setting: no sample of a dead one
    assert record["memory_used"] is None and record["uptime_s"] is None


def test_oom_advice_names_the_setting_and_the_admins_cap() -> None:
    assert "c.ContainerProvisioner.mem_limit" in oom_advice(False, "", "/p.json")
    assert "--memory" in oom_advice(True, "", "/p.json")
    capped = oom_advice(False, "8g", "/etc/nbcontainers/policy.json")
    assert "at most 8g" in capped and "ask your admin" in capped


def test_gpu_query_parsing_and_absent_gpus() -> None:
    out = "0, NVIDIA H100 80GB HBM3, 37, 1024, 81559\n1, NVIDIA H100, [N/A], 0, 81559\n"
    gpus = parse_query(out)
    assert gpus[0] == {
        "index": 0,
        "name": "NVIDIA H100 80GB HBM3",
        "utilization": 37.0,
        "memory_used": 1024 << 20,
        "memory_total": 81559 << 20,
    }
    assert gpus[1]["utilization"] is None

    class Runtime:
        def __init__(self, result: ExecResult | Exception) -> None:
            self.result = result

        def exec(self, container_id: str, command: list[str]) -> ExecResult:
            if isinstance(self.result, Exception):
                raise self.result
            return self.result

    assert container_gpus(Runtime(ExecResult(127, "sh: nvidia-smi: not found")), "c") == []  # type: ignore[arg-type]
    assert container_gpus(Runtime(ExecResult(0, out)), "c") == gpus  # type: ignore[arg-type]
    # A failing driver is "unknown", never "no GPU".
    assert container_gpus(Runtime(ExecResult(9, "NVML: driver mismatch")), "c") is None  # type: ignore[arg-type]
    assert container_gpus(Runtime(RuntimeError("gone")), "c") is None  # type: ignore[arg-type]


def test_the_collector_lists_only_the_owners_containers(fake_runtime: Any) -> None:
    me = Host.current().owner
    image = "nbcontainers/python:1"
    fake_runtime.add_image(image)
    mine = fake_runtime.run(
        ContainerSpec(image, ("sleep",), labels={KERNEL_ID: "mine", OWNER: me, IMAGE_LABEL: "x"})
    )
    theirs = fake_runtime.run(
        ContainerSpec(image, ("sleep",), labels={KERNEL_ID: "theirs", OWNER: "someone-else"})
    )
    # A container without a kernel id (the network holder) is no kernel.
    fake_runtime.run(ContainerSpec(image, ("sleep",), labels={OWNER: me, ROLE: "netns"}))
    collector = Collector(bare_server(), lambda: fake_runtime)
    try:
        records = asyncio.run(collector.records())
    finally:
        collector.close()
    assert [r["container_id"] for r in records] == [mine]
    assert records[0]["memory_used"] == 1 << 20  # the fake's figure, sampled on first list
    assert collector.lookup(records, "mine") is records[0]
    assert collector.lookup(records, mine[:12]) is records[0]
    assert collector.lookup(records, "theirs") is None
    assert collector.lookup(records, theirs) is None
