"""The Kubernetes runtime and its Role: a service account that lacks a verb is told which,
and which Role to apply, before a kernel pod is made (ping asks a SelfSubjectRulesReview)."""

from __future__ import annotations

import pytest
from kubernetes import client as k

from nbcontainers.errors import RuntimeFailure
from nbcontainers.runtimes.k8s_names import ROLE_RULES
from nbcontainers.runtimes.k8s_status import missing_verbs
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
