"""The RBAC evaluator and Pod Security checks the attack tests rely on, on hand-made cases:
they say yes where Kubernetes would, so a passing attack test means something."""

from __future__ import annotations

from typing import Any

from tests.k8s.pss import ATTACK_PODS, admission, baseline, restricted
from tests.k8s.rbac_eval import Account, Cluster, rule_matches

RBAC = "rbac.authorization.k8s.io"
ME = Account("hub", "me")


def role(ns: str, name: str, *rules: dict[str, Any]) -> list[dict[str, Any]]:
    kind, binding = ("Role", "RoleBinding") if ns else ("ClusterRole", "ClusterRoleBinding")
    meta = {"name": name, "namespace": ns} if ns else {"name": name}
    return [
        {"kind": kind, "metadata": meta, "rules": list(rules)},
        {
            "kind": binding,
            "metadata": meta,
            "roleRef": {"apiGroup": RBAC, "kind": kind, "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": "me", "namespace": "hub"}],
        },
    ]


def ns(name: str, level: str = "") -> dict[str, Any]:
    labels = {"pod-security.kubernetes.io/enforce": level} if level else {}
    return {"kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def test_rule_matching() -> None:
    rule = {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}
    assert rule_matches(rule, "get", "", "pods", None)
    assert not rule_matches(rule, "get", "", "pods/exec", None)  # a subresource is its own
    assert not rule_matches(rule, "get", "apps", "pods", None)
    star = {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}
    assert rule_matches(star, "create", "apps", "deployments/scale", None)
    sub = {"apiGroups": [""], "resources": ["*/exec"], "verbs": ["create"]}
    assert rule_matches(sub, "create", "", "pods/exec", None)
    named = {
        "apiGroups": [""],
        "resources": ["pods"],
        "verbs": ["get", "create"],
        "resourceNames": ["a"],
    }
    assert rule_matches(named, "get", "", "pods", "a")
    assert not rule_matches(named, "get", "", "pods", "b")
    assert not rule_matches(named, "create", "", "pods", None)  # create has no name


def test_pods_in_an_unrestricted_namespace_are_root_on_a_node() -> None:
    objects = [
        ns("hub"),
        *role("hub", "r", {"apiGroups": [""], "resources": ["pods"], "verbs": ["create"]}),
    ]
    objects.append({"kind": "ServiceAccount", "metadata": {"name": "admin", "namespace": "hub"}})
    reach = Cluster(objects).reach(ME)
    assert reach.node_root and Account("hub", "admin") in reach.accounts
    assert reach.anything_in("elsewhere") == ["root on a node: everything"]


def test_pods_in_a_restricted_namespace_take_its_accounts_and_secrets() -> None:
    objects = [
        ns("hub"),
        ns("k", "restricted"),
        *role("k", "r", {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["create"]}),
    ]
    objects.append({"kind": "ServiceAccount", "metadata": {"name": "builder", "namespace": "k"}})
    objects += role("k", "b", {"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]})
    objects[-1]["subjects"] = [{"kind": "ServiceAccount", "name": "builder", "namespace": "k"}]
    reach = Cluster(objects).reach(ME)
    assert not reach.node_root
    assert Account("k", "builder") in reach.accounts and reach.secrets_of == {"k"}
    assert reach.can("list", "secrets", "k") and not reach.can("list", "secrets", "hub")


def test_bind_and_escalate_grant_anything_in_the_namespace() -> None:
    bind = role(
        "k",
        "r",
        {"apiGroups": [RBAC], "resources": ["rolebindings"], "verbs": ["create"]},
        {
            "apiGroups": [RBAC],
            "resources": ["clusterroles"],
            "verbs": ["bind"],
            "resourceNames": ["admin"],
        },
    )
    # A bind limited to one name still binds that role, "admin" say: the same as any.
    assert Cluster([ns("k", "restricted"), *bind]).reach(ME).admin_of == {"k"}
    bind[0]["rules"][1].pop("resourceNames")
    reach = Cluster([ns("k", "restricted"), *bind]).reach(ME)
    assert reach.admin_of == {"k"} and reach.can("get", "secrets", "k")
    bind[0]["rules"].pop(0)  # bind without creating a binding grants nothing
    assert Cluster([ns("k", "restricted"), *bind]).reach(ME).admin_of == set()
    escalate = role(
        "k", "r", {"apiGroups": [RBAC], "resources": ["roles"], "verbs": ["escalate", "update"]}
    )
    assert Cluster([ns("k", "restricted"), *escalate]).reach(ME).admin_of == {"k"}


def test_exec_takes_the_accounts_of_running_pods() -> None:
    exec_hub_pod = {
        "apiGroups": [""],
        "resources": ["pods/exec"],
        "verbs": ["get"],
        "resourceNames": ["hub-1"],  # one named pod is enough
    }
    objects = [ns("hub", "restricted"), *role("hub", "r", exec_hub_pod)]
    objects.append({"kind": "ServiceAccount", "metadata": {"name": "hubsa", "namespace": "hub"}})
    reach = Cluster(objects).reach(ME)
    assert Account("hub", "hubsa") in reach.accounts and reach.exec_in == {"hub"}


def test_a_cluster_role_binding_reaches_every_namespace() -> None:
    objects = [
        ns("a", "restricted"),
        *role("", "r", {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}),
    ]
    reach = Cluster(objects).reach(ME)
    assert reach.can("get", "secrets", "a") and reach.can("get", "secrets", "anywhere")


def test_pod_security_levels() -> None:
    for what, pod in ATTACK_PODS.items():
        assert restricted(pod), what
        assert admission({}, pod) == []  # an unlabelled namespace admits anything
    assert baseline(ATTACK_PODS["root, default settings"]) == []  # baseline allows root
    assert baseline(ATTACK_PODS["privileged"]) and baseline(ATTACK_PODS["hostPath /"])
    good = {
        "spec": {
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "k",
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
            "volumes": [{"name": "s", "emptyDir": {}}],
        }
    }
    assert restricted(good) == []
    good["spec"]["volumes"].append({"name": "n", "nfs": {"server": "x", "path": "/"}})
    assert restricted(good) == ["Volume Types: volume n is ['nfs']"]
