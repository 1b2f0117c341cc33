"""The Kubernetes runtime and its Role: a service account that lacks a verb is told which,
and which Role to apply, before a kernel pod is made (ping asks a SelfSubjectRulesReview)."""

from __future__ import annotations

import pytest
from kubernetes import client as k

from nbcontainers.errors import RuntimeFailure
from nbcontainers.runtimes.kubernetes.names import ROLE_RULES
from nbcontainers.runtimes.kubernetes.status import missing_verbs
from tests.k8s.fake_api import FakeCluster, runtime_for


def test_ping_names_every_missing_verb() -> None:
    cluster = FakeCluster()
    cluster.forbidden |= {("create", "pods"), ("create", "networkpolicies")}
    with pytest.raises(RuntimeFailure) as caught:
        runtime_for(cluster).ping()
    message = str(caught.value)
    assert "may not create pods, create networkpolicies in namespace nbc" in message
    assert "Role 'nbc-kernels'" in message and "nbcontainers k8s manifests --user" in message


def test_the_full_role_passes_and_asking_may_be_refused() -> None:
    cluster = FakeCluster()
    assert runtime_for(cluster).ping().name == "kubernetes"
    cluster.forbidden.add(("create", "selfsubjectrulesreviews"))  # a hardened cluster
    assert runtime_for(cluster).ping().name == "kubernetes"


def test_rules_as_a_cluster_may_grant_them() -> None:
    everything = [k.V1ResourceRule(api_groups=["*"], resources=["*"], verbs=["*"])]
    assert missing_verbs(everything) == []
    pods_only = [k.V1ResourceRule(api_groups=[""], resources=["pods"], verbs=["*"])]
    assert "get pods/log" in missing_verbs(pods_only)
    assert "create pods" not in missing_verbs(pods_only)
    # A rule limited to named objects can't cover pods that don't exist yet.
    named = [k.V1ResourceRule(api_groups=["*"], resources=["*"], verbs=["*"], resource_names=["x"])]
    assert len(missing_verbs(named)) == sum(len(r.verbs) for r in ROLE_RULES) - 1  # no exec get


def test_a_failed_clean_up_does_not_hide_the_reason() -> None:
    from nbcontainers.runtimes.base import ContainerSpec

    cluster = FakeCluster(images=("img:1",))
    cluster.forbidden |= {("create", "networkpolicies"), ("delete", "pods")}
    with pytest.raises(RuntimeFailure, match="verb 'create' on 'networkpolicies'"):
        runtime_for(cluster).run(ContainerSpec("img:1", ("python",), name="nbc-a", user="1:1"))


@pytest.mark.parametrize(
    ("message", "fix"),
    [
        (
            'pods "nbc-a" is forbidden: exceeded quota: nbc-kernels, requested: pods=1, '
            "used: pods=10, limited: pods=10",
            "--quota-pods",
        ),
        (
            'pods "nbc-a" is forbidden: maximum memory usage per Container is 32Gi, but limit '
            "is 64Gi",
            "--max-memory",
        ),
        (
            'pods "nbc-a" is forbidden: violates PodSecurity "restricted:v1.31": hostPort',
            "NBC_K8S_POD_TEMPLATE",
        ),
    ],
)
def test_admission_refusals_say_what_to_change(message: str, fix: str) -> None:
    """A 403 from the quota, the LimitRange or Pod Security is not a missing verb."""
    from tests.k8s.fake_core import status

    cluster = FakeCluster(images=("img:1",))

    def refuse(namespace: str, body: object) -> None:
        raise status(403, "Forbidden", message)

    cluster.core.create_namespaced_pod = refuse  # type: ignore[method-assign]
    from nbcontainers.runtimes.base import ContainerSpec

    with pytest.raises(RuntimeFailure) as caught:
        runtime_for(cluster).run(ContainerSpec("img:1", ("python",), name="nbc-a", user="1:1"))
    assert fix in str(caught.value) and message in str(caught.value)
    assert "needs the verb" not in str(caught.value)
