"""The shared network holder against the in-memory engine: reuse, replacement of a dead one
(with what a dead engine left joined to it), and two kernel starts racing to create it."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from nbcontainers.errors import ContainerConflict, RuntimeFailure, Unsupported
from nbcontainers.kernels.netns import HOLDER_ROLE, clear_leftovers, holder_name, shared_netns
from nbcontainers.labels import KERNEL_ID, OWNER, ROLE
from nbcontainers.runtimes.base import ContainerSpec, ContainerState
from nbcontainers.runtimes.fake import FakeRuntime

IMAGE = "nbcontainers-test/holder:1"
NEVER = "0001-01-01T00:00:00Z"  # the StartedAt of a container that never ran


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
            return replace(found, status="created", started_at=NEVER)  # made, not started yet
        return found

    monkeypatch.setattr(fake, "state", state)
    assert shared_netns(fake, "ada", IMAGE, "1000:1000") == f"container:{theirs}"
    assert len(seen) == 3 and len(fake.specs) == 1  # waited, removed nothing, started nothing


class _PodmanLike(FakeRuntime):
    """The fake engine with Podman's rule: a container others joined (``container:<id>``)
    cannot be removed while they exist, even when all of them have exited."""

    def __init__(self) -> None:
        super().__init__(images=[IMAGE])
        self.joined: dict[str, str] = {}  # container id -> the id whose network it joined

    def run(self, spec: ContainerSpec) -> str:
        cid = super().run(spec)
        if (spec.network_mode or "").startswith("container:"):
            self.joined[cid] = (spec.network_mode or "").split(":", 1)[1]
        return cid

    def remove(self, container_id: str) -> None:
        target = self.state(container_id)
        if target is not None and any(
            self.state(cid) is not None for cid, to in self.joined.items() if to == target.id
        ):
            raise RuntimeFailure(
                f"remove container {container_id[:12]}: container {target.id} has dependent "
                "containers which must be removed before it"
            )
        super().remove(container_id)


def _joined(fake: FakeRuntime, mode: str, owner: str, name: str, role: str = "") -> str:
    labels = {OWNER: owner, KERNEL_ID: name, **({ROLE: role} if role else {})}
    spec = ContainerSpec(image=IMAGE, command=("sleep", "1"), name=name, labels=labels)
    return fake.run(replace(spec, network_mode=mode))


def _engine_died(fake: FakeRuntime) -> None:
    for state in fake.list({}):
        if state.running:
            fake.exit(state.id, 137)


def test_a_dead_engines_leftovers_are_cleared_and_the_start_goes_on() -> None:
    # A reboot ends the holder, a pool member and a kernel joined to it; another owner's
    # ended kernel and this owner's running container elsewhere are none of the heal's business.
    fake = _PodmanLike()
    mode = shared_netns(fake, "ada", IMAGE, "1000:1000")
    member = _joined(fake, mode, "ada", "ada-pool", role="pool")
    kernel = _joined(fake, mode, "ada", "ada-kernel")
    bob = _joined(fake, shared_netns(fake, "bob", IMAGE, "1001:1001"), "bob", "bob-kernel")
    _engine_died(fake)
    alive = fake.run(ContainerSpec(image=IMAGE, command=("sleep", "9"), name="ada-live",
                                   labels={OWNER: "ada", KERNEL_ID: "live"}))  # fmt: skip
    healed = shared_netns(fake, "ada", IMAGE, "1000:1000")
    assert healed != mode and fake.state(healed.split(":", 1)[1]).status == "running"  # type: ignore[union-attr]
    assert fake.state(member) is None and fake.state(kernel) is None
    assert fake.state(bob) is not None and fake.state(holder_name("bob")) is not None
    assert fake.state(alive) is not None and fake.state(alive).running  # type: ignore[union-attr]
    _joined(fake, healed, "ada", "ada-next")  # and the next kernel joins the new one


def test_an_unchanged_start_would_have_failed_on_the_leftovers() -> None:
    # The finding itself, on this fake: the engine's refusal, raw, as every start got it.
    fake = _PodmanLike()
    mode = shared_netns(fake, "ada", IMAGE, "1000:1000")
    _joined(fake, mode, "ada", "ada-pool", role="pool")
    _engine_died(fake)
    with pytest.raises(RuntimeFailure, match="dependent containers"):
        fake.remove(mode.split(":", 1)[1])


def test_a_holder_ended_under_running_kernels_says_what_to_do() -> None:
    fake = _PodmanLike()
    mode = shared_netns(fake, "ada", IMAGE, "1000:1000")
    _joined(fake, mode, "ada", "ada-kernel")
    fake.exit(mode.split(":", 1)[1], 137)  # the holder alone was killed
    with pytest.raises(RuntimeFailure, match=r"Shut down your running container kernels"):
        shared_netns(fake, "ada", IMAGE, "1000:1000")
    assert fake.state(holder_name("ada")) is not None  # nothing running was touched


def test_clear_leftovers_takes_only_ended_labelled_containers_of_the_owner() -> None:
    fake = _fake()
    ended = _joined(fake, "bridge", "ada", "a1")
    running = _joined(fake, "bridge", "ada", "a2")
    other = _joined(fake, "bridge", "bob", "b1")
    plain = fake.run(ContainerSpec(image=IMAGE, command=("x",), labels={OWNER: "ada"}))
    for cid in (ended, other, plain):
        fake.exit(cid, 0)
    assert clear_leftovers(fake, "ada") == ["a1"]
    assert fake.state(ended) is None
    assert all(fake.state(c) is not None for c in (running, other, plain))


def test_leftovers_podman_calls_created_again_after_a_reset_are_cleared(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # After a reboot (or ensure_service's reset after a kill) Podman reports every container
    # "created": those that ran before are leftovers; one that never ran is a start in flight.
    fake = _PodmanLike()
    mode = shared_netns(fake, "ada", IMAGE, "1000:1000")
    kernel = _joined(fake, mode, "ada", "ada-kernel")
    _engine_died(fake)
    in_flight = _joined(fake, "bridge", "ada", "ada-starting")
    real_state, real_list = fake.state, fake.list

    def reset(state: ContainerState | None) -> ContainerState | None:
        if state is None:
            return None
        return replace(
            state, status="created", started_at=NEVER if state.id == in_flight else state.started_at
        )

    monkeypatch.setattr(fake, "state", lambda key: reset(real_state(key)))
    monkeypatch.setattr(fake, "list", lambda labels: [reset(s) for s in real_list(labels)])
    started = time.monotonic()
    healed = shared_netns(fake, "ada", IMAGE, "1000:1000")
    assert time.monotonic() - started < 2  # not waited for as if another start made them
    assert healed != mode and real_state(kernel) is None
    assert real_state(in_flight) is not None  # never touched
