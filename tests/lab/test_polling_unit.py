"""What one poll of the kernels list asks an engine: the Docker runtime's listing inspects only
containers whose row changed, its stats are one-shot after the first with CPU measured against
the previous sample, and the collector shares one list among clients and samples idle kernels
less often. bench/lab_polling.py measures what this saves on a real engine."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any
from unittest import mock

import pytest

from nbcontainers.kernels.pooled import POOL_ROLE
from nbcontainers.lab import collect
from nbcontainers.lab.collect import FRESH, IDLE_FRESH, Collector, Found, _recently_active
from nbcontainers.labels import KERNEL_ID, OWNER, ROLE
from nbcontainers.runtimes.base import ContainerSpec, ContainerState
from nbcontainers.runtimes.docker import wire
from nbcontainers.runtimes.docker.runtime import DockerRuntime
from nbcontainers.runtimes.docker.wire import stats_since

from .bare import bare_server

SECOND = 1_000_000_000  # the engine's CPU counters are in nanoseconds


class Engine:
    """The few Engine API calls a listing and a stats call make, counted."""

    def __init__(self, version: str = "1.41") -> None:
        self.api_version = version
        self.rows: dict[str, dict[str, Any]] = {}
        self.inspected: list[str] = []
        self.stats_asked: list[Any] = []
        self.cpu = {"total": 0, "system": 0}

    def add(self, cid: str, status: str = "running", code: int = 0) -> None:
        self.rows[cid] = {"Id": cid, "Names": [f"/n-{cid}"], "State": status, "code": code}

    def containers(self, all: bool, filters: Any) -> list[dict[str, Any]]:
        return [dict(r) for r in self.rows.values()]

    def inspect_container(self, cid: str) -> dict[str, Any]:
        import docker.errors

        self.inspected.append(cid)
        if cid not in self.rows:
            raise docker.errors.NotFound("gone")
        row = self.rows[cid]
        return {
            "Id": cid,
            "Name": row["Names"][0],
            "Image": "sha256:1",
            "State": {"Status": row["State"], "ExitCode": row["code"], "StartedAt": "t0"},
            "Config": {"Image": "img", "Labels": {"k": "v"}},
        }

    def stats(self, cid: str, stream: bool, one_shot: Any = None) -> dict[str, Any]:
        self.stats_asked.append(one_shot)
        now = {
            "cpu_usage": {"total_usage": self.cpu["total"]},
            "system_cpu_usage": self.cpu["system"],
            "online_cpus": 2,
        }
        # A one-shot answer has an empty previous sample; a two-sample one the engine's own.
        before = (
            {"cpu_usage": {"total_usage": 0}}
            if one_shot
            else {
                "cpu_usage": {"total_usage": self.cpu["total"] - SECOND // 10},
                "system_cpu_usage": self.cpu["system"] - 2 * SECOND,
            }
        )
        memory = {"usage": 5 << 20, "limit": 1 << 30}
        return {"cpu_stats": now, "precpu_stats": before, "memory_stats": memory}


def _runtime(engine: Engine) -> DockerRuntime:
    runtime = DockerRuntime("unix:///nowhere")
    runtime._client = SimpleNamespace(api=engine)
    return runtime


def test_a_listing_inspects_only_containers_whose_row_changed() -> None:
    engine = Engine()
    engine.add("a")
    engine.add("b")
    runtime = _runtime(engine)
    first = runtime.list({OWNER: "ann"})
    assert [s.id for s in first] == ["a", "b"] and engine.inspected == ["a", "b"]
    assert first[0].started_at == "t0" and first[0].labels == {"k": "v"}  # the inspect's
    # Nothing changed: one listing call, no inspect (it was 1 + one per container).
    assert runtime.list({OWNER: "ann"}) == first and engine.inspected == ["a", "b"]
    # b died: only b is asked again, for its exit code; a new container c is asked too.
    engine.rows["b"].update(State="exited", code=137)
    engine.add("c")
    again = runtime.list({OWNER: "ann"})
    assert engine.inspected == ["a", "b", "b", "c"]
    assert [(s.id, s.status, s.exit_code) for s in again] == [
        ("a", "running", None),
        ("b", "exited", 137),
        ("c", "running", None),
    ]
    # Renamed: asked again. Gone between the listing and the inspect: left out.
    engine.rows["a"]["Names"] = ["/renamed"]
    with mock.patch.object(engine, "inspect_container", side_effect=_gone(engine)):
        assert [s.id for s in runtime.list({})] == ["b", "c"]


def _gone(engine: Engine) -> Any:
    import docker.errors

    def inspect(cid: str) -> Any:
        raise docker.errors.NotFound("gone")

    return inspect


def test_a_restarting_container_is_always_inspected() -> None:
    engine = Engine()
    engine.add("a", status="restarting")
    runtime = _runtime(engine)
    runtime.list({})
    runtime.list({})
    assert engine.inspected == ["a", "a"]  # its start time and exit code move


def test_stats_are_one_shot_after_the_first_with_cpu_from_the_previous_sample() -> None:
    engine = Engine()
    runtime = _runtime(engine)
    engine.cpu = {"total": 10 * SECOND, "system": 100 * SECOND}
    first = runtime.stats("a")
    assert engine.stats_asked == [None]  # the engine's two samples: 0.1 s of 2 s, 2 CPUs
    assert first.cpu_percent == pytest.approx(10.0) and first.memory_used == 5 << 20
    # 0.5 s of CPU over 4 s of the host's CPU counters (2 CPUs): 25 % of one CPU.
    engine.cpu = {"total": 10 * SECOND + SECOND // 2, "system": 104 * SECOND}
    second = runtime.stats("a")
    assert engine.stats_asked == [None, True]
    assert second.cpu_percent == pytest.approx(25.0)
    # A base older than CPU_BASE_AGE would average minutes: two samples again.
    with mock.patch.object(wire.time, "monotonic", return_value=1e12):
        runtime.stats("a")
    assert engine.stats_asked[-1] is None


def test_an_engine_older_than_api_1_41_never_gets_one_shot() -> None:
    engine = Engine(version="1.40")
    runtime = _runtime(engine)
    engine.cpu = {"total": SECOND, "system": 10 * SECOND}
    runtime.stats("a")
    runtime.stats("a")
    assert engine.stats_asked == [None, None]


def test_an_engine_refusing_one_shot_gets_two_sample_calls_from_then_on() -> None:
    import docker.errors

    engine = Engine()
    runtime = _runtime(engine)
    engine.cpu = {"total": SECOND, "system": 10 * SECOND}
    answer = engine.stats

    def refusing(cid: str, stream: bool, one_shot: Any = None) -> Any:
        if one_shot:
            engine.stats_asked.append("refused")
            raise docker.errors.APIError("bad", response=SimpleNamespace(status_code=400))
        return answer(cid, stream, one_shot)

    engine.stats = refusing  # type: ignore[method-assign]
    runtime.stats("a")
    second = runtime.stats("a")
    runtime.stats("a")
    assert engine.stats_asked == [None, "refused", None, None]
    assert second.cpu_percent == pytest.approx(10.0)  # the engine's own two samples


def test_a_one_shot_answer_without_a_base_has_no_cpu_figure() -> None:
    # Docker's one-shot answer: empty precpu_stats. Its CPU would be the average since the
    # container started; without a previous sample there is no figure, not a wrong one.
    raw = {
        "cpu_stats": {"cpu_usage": {"total_usage": 50 * SECOND}, "system_cpu_usage": SECOND},
        "precpu_stats": {"cpu_usage": {"total_usage": 0}},
        "memory_stats": {"usage": 1, "limit": 2},
    }
    got = stats_since(raw, None)
    assert got.cpu_percent is None and (got.memory_used, got.memory_limit) == (1, 2)


class CountingRuntime:
    """The fake runtime, counting listings."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.lists = inner, 0

    def list(self, labels: Any) -> Any:
        self.lists += 1
        return self.inner.list(labels)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_clients_polling_together_share_one_list(fake_runtime: Any) -> None:
    from nbcontainers.kernels.identity import Host

    fake_runtime.add_image("img")
    fake_runtime.run(
        ContainerSpec("img", ("sleep",), labels={KERNEL_ID: "k", OWNER: Host.current().owner})
    )
    runtime = CountingRuntime(fake_runtime)
    server = bare_server()
    km = server.kernel_manager
    collector = Collector(server, lambda: runtime)  # type: ignore[arg-type,return-value]

    async def polls() -> None:
        # Three tabs at once: one list. Asked again within SHARED: the same list.
        lists = await asyncio.gather(*(collector.records() for _ in range(3)))
        assert [len(got) for got in lists] == [1, 1, 1] and runtime.lists == 1
        await collector.records()
        assert runtime.lists == 1
        # A stop invalidates it; and a list older than SHARED is made again.
        collector.invalidate()
        await collector.records()
        assert runtime.lists == 2
        collector.listed_at -= collect.SHARED + 0.1
        await collector.records()
        assert runtime.lists == 3
        # A kernel started on this server since: a fresh list, however recent the last.
        kernel = SimpleNamespace(provisioner=SimpleNamespace(container_id="c-new"))
        km.list_kernel_ids = lambda: ["k-new"]
        km.get_kernel = lambda k: kernel
        await collector.records()
        assert runtime.lists == 4
        await collector.records()
        assert runtime.lists == 4
        kernel.provisioner.container_id = "c-restarted"  # a restart's new container
        await collector.records()
        assert runtime.lists == 5

    try:
        asyncio.run(polls())
    finally:
        collector.close()


def test_idle_kernels_are_sampled_less_often() -> None:
    now = datetime.now(timezone.utc)
    busy = SimpleNamespace(execution_state="busy", last_activity=now - timedelta(hours=1))
    lately = SimpleNamespace(execution_state="idle", last_activity=now - timedelta(seconds=5))
    idle = SimpleNamespace(execution_state="idle", last_activity=now - timedelta(minutes=5))
    assert _recently_active(busy, now) and _recently_active(lately, now)
    assert not _recently_active(idle, now)
    assert _recently_active(SimpleNamespace(), now)  # can't tell: as often as asked

    collector = Collector(bare_server())
    collector.active = {"k-active"}
    state = ContainerState("c", "n", "img", "running", None, False, {})
    pooled = ContainerState("p", "n", "img", "running", None, False, {ROLE: POOL_ROLE})

    def found(state: ContainerState, known: Any = None, parent: Any = None) -> Found:
        return Found(state, None, known, parent)  # type: ignore[arg-type]

    try:
        assert collector.freshness(found(state, {"kernel_id": "k-active"})) == FRESH
        assert collector.freshness(found(state, {"kernel_id": "k-idle"})) == IDLE_FRESH
        # A %container use kernel follows the local kernel relaying to it.
        assert collector.freshness(found(state, None, {"kernel_id": "k-active"})) == FRESH
        assert collector.freshness(found(pooled)) == IDLE_FRESH
        assert collector.freshness(found(state)) == FRESH  # another server's: as asked
    finally:
        collector.close()
