"""Placement on a real swarm (tests/swarmnet.py: this host as manager, a Docker-in-Docker
worker): each rule reaches the service as the Swarm constraint users would write, ``!=``
included, and the scheduler honours it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from nbcontainers.errors import Unsupported
from nbcontainers.labels import KERNEL_ID
from nbcontainers.runtimes.base import ContainerSpec, Placement, parse_placement
from tests.swarmnet import BASE_IMAGE, ON_WORKER, WORKER

pytestmark = pytest.mark.docker


@pytest.fixture
def services(swarm: Any) -> Iterator[list[str]]:
    made: list[str] = []
    yield made
    for sid in made:
        swarm.remove(sid)


def run(swarm: Any, made: list[str], *rules: Placement) -> str:
    spec = ContainerSpec(
        BASE_IMAGE,
        ("sleep", "infinity"),
        labels={KERNEL_ID: f"placement-{uuid.uuid4().hex[:8]}"},
        placement=rules,
    )
    sid: str = swarm.run(spec)
    made.append(sid)
    return sid


def test_rules_become_constraints_the_scheduler_honours(swarm: Any, services: list[str]) -> None:
    # The swarm fixture confines everything to the worker (ON_WORKER); the rules here add to it.
    first = run(swarm, services, parse_placement("node.hostname!=nbc-no-such-node"))
    worker = swarm.state(first).node
    assert worker and swarm.state(first).running
    placed = run(
        swarm, services, Placement(worker), Placement("gpu", label="nbc.kind", equal=False)
    )
    state = swarm.state(placed)
    assert state.running and state.node == worker
    constraints = swarm.api.inspect_service(placed)["Spec"]["TaskTemplate"]["Placement"]
    assert constraints["Constraints"] == [
        ON_WORKER,
        f"node.hostname=={worker}",
        "node.labels.nbc.kind!=gpu",
    ]


def test_a_rule_no_node_meets_is_refused_and_leaves_nothing(
    swarm: Any, services: list[str]
) -> None:
    away = parse_placement(f"node.labels.nbc.node!={WORKER}")  # the fixture wants the worker
    with pytest.raises(
        Unsupported, match=rf"No node of this swarm.*node.labels.nbc.node!={WORKER}"
    ):
        run(swarm, services, away)
    assert services == []
    assert [
        s for s in swarm.list({KERNEL_ID: None}) if s.labels[KERNEL_ID].startswith("placement-")
    ] == []


def test_advice_names_the_service_and_node(swarm: Any) -> None:
    assert swarm.advice("locate", "nbc-x") == "`docker service ps --no-trunc nbc-x` on a manager"
    assert swarm.advice("node", WORKER).startswith(f"`docker node inspect {WORKER}`")
