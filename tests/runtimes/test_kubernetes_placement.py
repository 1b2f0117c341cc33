"""Placement on Kubernetes: ``==`` rules become the pod's nodeSelector, ``!=`` rules NotIn node
affinity, and neither ever widens where the admin's selector or pod template lets kernels run;
a rule a pod can't carry, or that can never hold there, is refused. Every pod validates
offline against the Kubernetes schemas."""

from __future__ import annotations

import kubernetes_validate
import pytest
from kubernetes import client as k

from nbcontainers.errors import Unsupported
from nbcontainers.runtimes.base import ContainerSpec, Placement, parse_placement
from nbcontainers.runtimes.kubernetes.placement import HOSTNAME_LABEL, confine
from nbcontainers.runtimes.kubernetes.pods import PodSettings, pod_for
from tests.k8s.fake_api import FakeCluster, runtime_for

IMAGE = "registry.example/nbc/python:1"


def placed(*rules: str, settings: PodSettings | None = None) -> k.V1Pod:
    spec = ContainerSpec(IMAGE, ("python",), user="1000:100")
    pod, _ = pod_for(spec, "nbc-p", settings or PodSettings(namespace="nbc"))
    confine(pod, tuple(parse_placement(r) for r in rules))
    return pod


def wire(pod: k.V1Pod) -> dict[str, object]:
    data: dict[str, object] = k.ApiClient().sanitize_for_serialization(pod)
    kubernetes_validate.validate(data, "1.31.0", strict=True)
    return data


def test_equal_rules_select_nodes_by_hostname_and_label() -> None:
    pod = placed("node.hostname==gpu-1", "node.labels.accelerator==a100")
    assert pod.spec.node_selector == {HOSTNAME_LABEL: "gpu-1", "accelerator": "a100"}
    assert pod.spec.affinity is None
    assert wire(pod)["spec"]["nodeSelector"] == {  # type: ignore[index]
        "kubernetes.io/hostname": "gpu-1",
        "accelerator": "a100",
    }


def test_not_equal_rules_are_required_node_affinity() -> None:
    pod = placed("node.hostname!=gpu-1", "node.labels.nbc.io/pool!=spot")
    terms = wire(pod)["spec"]["affinity"]["nodeAffinity"][  # type: ignore[index]
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]["nodeSelectorTerms"]
    assert terms == [
        {
            "matchExpressions": [
                {"key": HOSTNAME_LABEL, "operator": "NotIn", "values": ["gpu-1"]},
                {"key": "nbc.io/pool", "operator": "NotIn", "values": ["spot"]},
            ]
        }
    ]
    assert pod.spec.node_selector is None


def test_rules_only_narrow_the_admins_selector() -> None:
    admin = PodSettings(namespace="nbc", node_selector={"pool": "gpu"})
    pod = placed("node.labels.pool==gpu", "node.labels.zone==b", settings=admin)
    assert pod.spec.node_selector == {"pool": "gpu", "zone": "b"}
    with pytest.raises(Unsupported, match=r"node.labels.pool==cpu can never hold.*pool=gpu"):
        placed("node.labels.pool==cpu", settings=admin)
    with pytest.raises(Unsupported, match="zone==b can never hold"):
        placed("node.labels.zone==a", "node.labels.zone==b")


def test_not_equal_rules_join_every_term_of_the_templates_affinity() -> None:
    # Terms are ORed: a rule added as a term of its own would let the pod go where the
    # admin's terms don't; added to each term, it only narrows them.
    spec = ContainerSpec(IMAGE, ("python",), user="1000:100")
    pod, _ = pod_for(spec, "nbc-p", PodSettings(namespace="nbc"))
    admin_terms = [
        k.V1NodeSelectorTerm(
            match_expressions=[
                k.V1NodeSelectorRequirement(key="pool", operator="In", values=[pool])
            ]
        )
        for pool in ("a", "b")
    ]
    pod.spec.affinity = k.V1Affinity(
        node_affinity=k.V1NodeAffinity(
            required_during_scheduling_ignored_during_execution=k.V1NodeSelector(
                node_selector_terms=admin_terms
            )
        )
    )
    confine(pod, (Placement("gpu-1", equal=False),))
    terms = wire(pod)["spec"]["affinity"]["nodeAffinity"][  # type: ignore[index]
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]["nodeSelectorTerms"]
    assert [[e["values"][0] for e in t["matchExpressions"]] for t in terms] == [
        ["a", "gpu-1"],
        ["b", "gpu-1"],
    ]


def test_a_rule_no_node_label_can_hold_is_refused() -> None:
    with pytest.raises(Unsupported, match=r"-spot.*not a node label"):
        placed("node.labels.pool==-spot")  # Swarm takes it; a Kubernetes label value can't
    with pytest.raises(Unsupported, match="not a node label"):
        placed(f"node.hostname=={'n' * 64}")


def test_the_runtime_places_the_pod_it_creates() -> None:
    cluster = FakeCluster(images=(IMAGE,))
    runtime = runtime_for(cluster)
    assert runtime.ping().placement is True
    cid = runtime.run(
        ContainerSpec(
            IMAGE,
            ("sleep", "infinity"),
            user="1000:100",
            placement=(parse_placement("node.labels.zone==b"), Placement("n2", equal=False)),
        )
    )
    try:
        pod = cluster.pods[cid]
        assert pod.spec.node_selector == {"zone": "b"}
        nodes = pod.spec.affinity.node_affinity
        [term] = nodes.required_during_scheduling_ignored_during_execution.node_selector_terms
        assert [(e.key, e.operator, e.values) for e in term.match_expressions] == [
            (HOSTNAME_LABEL, "NotIn", ["n2"])
        ]
    finally:
        runtime.remove(cid)
