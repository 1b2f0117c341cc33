"""The shared network holder against the in-memory engine: reuse, replacement of a dead one,
and two kernel starts racing to create it."""

from __future__ import annotations

from dataclasses import replace

import pytest

from nbcontainers.errors import ContainerConflict, Unsupported
from nbcontainers.kernels.netns import HOLDER_ROLE, holder_name, shared_netns
from nbcontainers.labels import OWNER, ROLE
from nbcontainers.runtimes.base import ContainerSpec, ContainerState
from nbcontainers.runtimes.fake import FakeRuntime

IMAGE = "nbcontainers-test/holder:1"


def _fake(**kwargs: object) -> FakeRuntime:
    return FakeRuntime(images=[IMAGE], **kwargs)  # type: ignore[arg-type]


def _holder_spec(
    owner: str = "ada", command: tuple[str, ...] = ("sleep", "infinity")
) -> ContainerSpec:
    return ContainerSpec(image=IMAGE, command=command, name=holder_name(owner))


def test_one_holder_per_owner_is_started_then_reused() -> None:
    fake = _fake()
    first = shared_netns(fake, "ada", IMAGE, "1000:1000")
    assert shared_netns(fake, "ada", IMAGE, "1000:1000") == first
    (holder,) = fake.list({ROLE: HOLDER_ROLE})
    assert first == f"container:{holder.id}" and holder.labels[OWNER] == "ada"
    spec = fake.specs[0]
    assert spec.command == ("sleep", "infinity") and spec.network_mode == "bridge"
    assert spec.user == "1000:1000" and (spec.mem_limit, spec.pids_limit) == ("16m", 4)
    assert shared_netns(fake, "bob", IMAGE, "1001:1001") != first  # another owner, another


def test_an_exited_holder_is_replaced() -> None:
    fake = _fake()
    first = shared_netns(fake, "ada", IMAGE, "1000:1000")
    fake.exit(first.split(":", 1)[1], 137)
    second = shared_netns(fake, "ada", IMAGE, "1000:1000")
    assert second != first and len(fake.list({ROLE: HOLDER_ROLE})) == 1


def test_a_holder_created_by_a_concurrent_start_is_joined(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _fake()
    theirs = fake.run(_holder_spec())  # the other start won the race...
    real_state = fake.state
    calls: list[str] = []

    def state(key: str) -> ContainerState | None:
        calls.append(key)
        return None if len(calls) == 1 else real_state(key)  # ...after we had looked

    monkeypatch.setattr(fake, "state", state)
    assert shared_netns(fake, "ada", IMAGE, "1000:1000") == f"container:{theirs}"
    assert len(fake.specs) == 1  # our run() was refused as a conflict: nothing else started


def test_a_conflict_with_a_holder_that_is_not_running_is_raised(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = _fake()
    theirs = fake.run(_holder_spec(command=("sh", "-c", "exit 1")))
    fake.exit(theirs, 1)  # exits at once
    real_state = fake.state
    calls: list[str] = []

    def state(key: str) -> ContainerState | None:
        calls.append(key)
        return None if len(calls) == 1 else real_state(key)  # looked before it existed

    monkeypatch.setattr(fake, "state", state)
    with pytest.raises(ContainerConflict, match="already in use"):
        shared_netns(fake, "ada", IMAGE, "1000:1000")
    assert len(calls) == 2  # raised once it was seen ended, not after a timeout


def test_a_taken_name_not_yet_inspectable_is_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    # Docker reserves the name before the container can be inspected: "in use", yet not found.
    fake = _fake()
    theirs = fake.run(_holder_spec())
    real_state = fake.state
    calls: list[str] = []

    def state(key: str) -> ContainerState | None:
        calls.append(key)
        return None if len(calls) <= 3 else real_state(key)

    monkeypatch.setattr(fake, "state", state)
    assert shared_netns(fake, "ada", IMAGE, "1000:1000") == f"container:{theirs}"
    assert len(calls) == 4 and len(fake.specs) == 1


def test_holder_limits_follow_what_the_engine_enforces() -> None:
    fake = _fake(limits=("shm",))
    with pytest.raises(Unsupported):  # the engine refuses limits it can't enforce...
        shared_netns(fake, "ada", IMAGE, "1000:1000")
    # ...so the provisioner passes the engine's facts, and the holder goes without them.
    mode = shared_netns(fake, "ada", IMAGE, "1000:1000", fake.ping().limits)
    assert mode.startswith("container:")
    assert (fake.specs[-1].mem_limit, fake.specs[-1].pids_limit) == (None, None)


def test_a_holder_another_start_has_created_but_not_started_is_waited_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Kernels may be joining it already (Podman then refuses to remove it): never removed.
    fake = _fake()
    theirs = fake.run(_holder_spec())
    real_state = fake.state
    seen: list[str] = []

    def state(key: str) -> ContainerState | None:
        found = real_state(key)
        seen.append(found.status if found else "")
        if found is not None and len(seen) < 3:
            return replace(found, status="created")  # made, not started yet
        return found

    monkeypatch.setattr(fake, "state", state)
    assert shared_netns(fake, "ada", IMAGE, "1000:1000") == f"container:{theirs}"
    assert len(seen) == 3 and len(fake.specs) == 1  # waited, removed nothing, started nothing
