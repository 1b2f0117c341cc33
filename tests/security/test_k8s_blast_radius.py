"""Kubernetes with a blast radius of one user: the attacker is a user with a terminal in their
notebook pod, holding the token of the ServiceAccount the shipped Z2JH values give that pod.

The tests read the objects ``nbcontainers k8s manifests`` generates (and the Z2JH chart's own
hub RBAC, which every such cluster has), evaluate them with the RBAC evaluator in
``tests/k8s/rbac_eval.py`` (wildcards, resourceNames, and the escalation paths: pods choose
any ServiceAccount and Secret of their namespace, exec, bind/escalate, token minting,
impersonation, and unrestricted namespaces meaning root on a node), and assert what each
user's account can and cannot reach. Pod Security is checked with the standard's controls
(``tests/k8s/pss.py``) against the generated namespaces and the runtime's own kernel pods.
"""

from __future__ import annotations

from typing import Any

import pytest

from nbcontainers.cluster.manifests import ManifestOptions, cluster_objects, z2jh_values
from tests.k8s.pss import ATTACK_PODS, admission
from tests.k8s.rbac_eval import Account, Cluster

HUB = "jhub"
USERS = ("alice", "bob", "carol")

# What the Zero to JupyterHub chart itself creates in the hub's namespace: the hub's
# ServiceAccount and Role (templates/hub/rbac.yaml), which reads the hub's Secrets.
Z2JH_HUB = [
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": HUB}},
    {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "hub", "namespace": HUB}},
    {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "hub", "namespace": HUB},
        "rules": [
            {
                "apiGroups": [""],
                "resources": ["pods", "persistentvolumeclaims", "secrets", "services"],
                "verbs": ["get", "watch", "list", "create", "delete"],
            },
            {"apiGroups": [""], "resources": ["events"], "verbs": ["get", "watch", "list"]},
        ],
    },
    {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "hub", "namespace": HUB},
        "subjects": [{"kind": "ServiceAccount", "name": "hub", "namespace": HUB}],
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "hub"},
    },
]


def generated(**options: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    opts = ManifestOptions(namespace=HUB, **options)
    return cluster_objects(opts), z2jh_values(opts)


def notebook_pod(values: dict[str, Any], user: str) -> dict[str, Any]:
    """What the hub makes of ``user``'s notebook pod with the shipped values: the chart's
    ``singleuser.serviceAccountName``, then the ``hub.extraConfig`` hooks run on it (as the
    chart's jupyterhub_config.py runs them), on the client's own models."""
    from types import SimpleNamespace

    from kubernetes import client as k

    single = values["singleuser"]
    env = [k.V1EnvVar(name="JUPYTERHUB_USER", value=user)]
    env += [k.V1EnvVar(name=n, value=v) for n, v in (single.get("extraEnv") or {}).items()]
    pod = k.V1Pod(
        metadata=k.V1ObjectMeta(
            name=f"jupyter-{user}",
            namespace=HUB,
            labels={"component": "singleuser-server", "hub.jupyter.org/username": user},
        ),
        spec=k.V1PodSpec(
            service_account_name=single.get("serviceAccountName"),
            automount_service_account_token=bool(single.get("serviceAccountName")),
            containers=[k.V1Container(name="notebook", image="jupyter", env=env)],
        ),
    )
    config = SimpleNamespace(KubeSpawner=SimpleNamespace(modify_pod_hook=None))
    for code in ((values.get("hub") or {}).get("extraConfig") or {}).values():
        exec(code, {"c": config})
    hook = config.KubeSpawner.modify_pod_hook
    if hook is not None:
        spawner = SimpleNamespace(user=SimpleNamespace(name=user), namespace=HUB)
        pod = hook(spawner, pod)
    token = pod.spec.automount_service_account_token
    return {
        "account": pod.spec.service_account_name if token else None,
        "env": {e.name: e.value for e in pod.spec.containers[0].env},
        "labels": dict(pod.metadata.labels or {}),
    }


def account_of(values: dict[str, Any], user: str) -> Account:
    name = notebook_pod(values, user)["account"]
    assert name, f"{user}'s notebook pod gets no ServiceAccount token"
    return Account(HUB, name)


def kernel_namespace(values: dict[str, Any], user: str) -> str:
    return str(notebook_pod(values, user)["env"].get("NBC_K8S_NAMESPACE") or HUB)


TEAMS = {"ml": ("alice", "bob"), "vision": ("carol",)}
# Per user, alice and bob are strangers; per team, alice and carol are.
STRANGER = {"user": "bob", "team": "carol"}


@pytest.fixture(params=["user", "team"])
def deployment(request: pytest.FixtureRequest) -> tuple[Cluster, dict[str, Any]]:
    if request.param == "user":
        objects, values = generated(per="user", users=USERS)
    else:
        objects, values = generated(per="team", teams=TEAMS)
    values["per"] = request.param
    return Cluster([*Z2JH_HUB, *objects]), values


def test_no_user_account_reaches_the_hub_namespace(
    deployment: tuple[Cluster, dict[str, Any]],
) -> None:
    """Nothing in the hub's namespace: not its pods (the hub pod, other users' notebook
    pods), not its Secrets, not the hub's ServiceAccount, not a pod of one's own there."""
    cluster, values = deployment
    for user in USERS:
        reach = cluster.reach(account_of(values, user))
        assert reach.anything_in(HUB) == [], f"{user}'s notebook account in {HUB}"
        assert Account(HUB, "hub") not in reach.accounts, f"{user} can act as the hub"
        for verb, resource in (("create", "pods"), ("delete", "pods"), ("get", "pods"),
                               ("create", "pods/exec"), ("get", "secrets")):  # fmt: skip
            assert not reach.can(verb, resource, HUB), f"{user} may {verb} {resource} in {HUB}"


def test_no_user_account_reads_secrets_or_grants_rights(
    deployment: tuple[Cluster, dict[str, Any]],
) -> None:
    cluster, values = deployment
    for user in USERS:
        reach = cluster.reach(account_of(values, user))
        assert not reach.node_root, f"{user} gets root on a node"
        assert reach.admin_of == set(), f"{user} can grant itself rights in {reach.admin_of}"
        own = kernel_namespace(values, user)
        assert reach.secrets_of <= {own}, f"{user} reads the Secrets of {reach.secrets_of}"
        for ns in cluster.namespaces:
            for verb in ("get", "list", "watch"):
                assert not reach.can(verb, "secrets", ns), f"{user} may {verb} secrets in {ns}"
            for resource in ("rolebindings", "roles", "clusterrolebindings"):
                assert not reach.can("create", resource, ns, "rbac.authorization.k8s.io")
            # A NetworkPolicy of its own would open its kernels' egress to the cluster.
            assert not reach.can("create", "networkpolicies", ns, "networking.k8s.io")
            assert not reach.can("create", "serviceaccounts/token", ns)
            assert not reach.can("impersonate", "serviceaccounts", ns)
        # What its own kernel namespace lets it become: accounts with no rights at all.
        for account in reach.accounts - {account_of(values, user)}:
            assert account.namespace == own
            assert cluster.reach(account).anything_in(own) == [] or account == account_of(
                values, user
            )


def test_one_user_cannot_touch_another_users_kernels(
    deployment: tuple[Cluster, dict[str, Any]],
) -> None:
    """Per-user namespaces: alice can't list, exec into or delete bob's kernel pods (per
    team: carol's, in another team)."""
    cluster, values = deployment
    alice = cluster.reach(account_of(values, "alice"))
    bob_ns = kernel_namespace(values, STRANGER[values["per"]])
    assert bob_ns != kernel_namespace(values, "alice")
    for verb, resource in (("get", "pods"), ("list", "pods"), ("delete", "pods"),
                           ("create", "pods/exec"), ("get", "pods/exec"), ("get", "pods/log"),
                           ("create", "pods")):  # fmt: skip
        assert not alice.can(verb, resource, bob_ns), f"alice may {verb} {resource} in {bob_ns}"
    assert alice.anything_in(bob_ns) == []


def test_kernel_namespaces_refuse_privileged_and_host_pods(
    deployment: tuple[Cluster, dict[str, Any]],
) -> None:
    """Every namespace a user's account can make pods in enforces Pod Security
    ``restricted`` (pinned version, audit and warn too), so the pods that take a node are
    refused there."""
    cluster, values = deployment
    for user in USERS:
        reach = cluster.reach(account_of(values, user))
        assert reach.pod_creators, f"{user} can't start kernels at all"
        for ns in reach.pod_creators:
            labels = cluster.namespaces[ns]
            for mode in ("enforce", "audit", "warn"):
                assert labels.get(f"pod-security.kubernetes.io/{mode}") == "restricted", (ns, mode)
            version = labels.get("pod-security.kubernetes.io/enforce-version", "latest")
            assert version.startswith("v1."), f"{ns}: enforce-version not pinned ({version})"
            for what, pod in ATTACK_PODS.items():
                assert admission(labels, pod), f"{ns} admits a {what} pod"


def test_the_runtime_starts_kernels_in_the_users_namespace_only() -> None:
    """With the environment the hub's hook gives alice's notebook pod, kernel pods go to
    alice's kernel namespace (a cluster that allows only that namespace and only the
    generated Role's verbs, and enforces ``restricted`` there, runs them), and it makes no
    NetworkPolicy (the Role has no such verb)."""
    from nbcontainers.runtimes.base import ContainerSpec
    from nbcontainers.runtimes.kubernetes.client import settings_from_env
    from tests.k8s.fake_api import FakeCluster, runtime_for

    _, values = generated(per="user", users=USERS)
    env = notebook_pod(values, "alice")["env"]
    assert env["NBC_K8S_NAMESPACE"] == "nbc-alice"
    settings, _ = settings_from_env(env)
    cluster = FakeCluster(images=("img:1",), namespace="nbc-alice")
    cluster.forbidden.add(("create", "networkpolicies"))
    runtime = runtime_for(cluster, settings=settings)
    spec = ContainerSpec(
        "img:1", ("sleep", "60"), name="nbc-k1", user="1000:100", ports={5001: ("", 1)}
    )
    name = runtime.run(spec)
    assert cluster.pods[name].metadata.namespace == "nbc-alice"
    assert cluster.policies == {}
    runtime.remove(name)
    # Bob's namespace refuses alice's account, as RBAC would.
    bob = FakeCluster(images=("img:1",), namespace="nbc-bob")
    with pytest.raises(Exception, match="403 Forbidden"):
        runtime_for(bob, settings=settings).run(spec)
    assert bob.pods == {}


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


def reaches(
    objects: list[dict[str, Any]],
    source: tuple[str, dict[str, str]],
    target: tuple[str, dict[str, str]],
) -> bool:
    """Whether NetworkPolicy ingress lets a pod (namespace, labels) connect to another: a
    pod no policy selects is open; else some rule of a selecting policy must admit it."""
    (src_ns, src_labels), (dst_ns, dst_labels) = source, target
    selecting = [
        o
        for o in objects
        if o["kind"] == "NetworkPolicy"
        and o["metadata"]["namespace"] == dst_ns
        and "Ingress" in o["spec"]["policyTypes"]
        and _selects(o["spec"]["podSelector"], dst_labels)
    ]
    if not selecting:
        return True
    src_ns_labels = {"kubernetes.io/metadata.name": src_ns}
    for policy in selecting:
        for rule in policy["spec"].get("ingress") or ():
            for peer in rule.get("from") or [{}]:
                in_ns = (
                    _selects(peer["namespaceSelector"], src_ns_labels)
                    if "namespaceSelector" in peer
                    else src_ns == dst_ns
                )
                if in_ns and _selects(peer.get("podSelector") or {}, src_labels):
                    return True
    return False


def test_only_the_users_own_notebook_pods_reach_their_kernels(
    deployment: tuple[Cluster, dict[str, Any]],
) -> None:
    """Network: a kernel pod admits its tenant's notebook pods, labelled by the hub's hook,
    and nothing a user can make: another user's notebook pod, or a pod in a kernel namespace
    carrying the label that the hook gives notebook pods."""
    cluster, values = deployment
    objects = list(cluster.objects)
    alice_ns, other = kernel_namespace(values, "alice"), STRANGER[values["per"]]
    kernel = (alice_ns, {"app.kubernetes.io/component": "nbc-kernel"})
    assert reaches(objects, (HUB, notebook_pod(values, "alice")["labels"]), kernel)
    assert not reaches(objects, (HUB, notebook_pod(values, other)["labels"]), kernel)
    forged = {"nbcontainers.io/kernel-namespace": alice_ns, "component": "singleuser-server"}
    for ns in (alice_ns, kernel_namespace(values, other)):
        assert not reaches(objects, (ns, forged), kernel), f"a pod in {ns} reaches alice's kernel"
    assert not reaches(objects, ("elsewhere", forged), kernel)


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"mem_limit": "2g", "nano_cpus": 2_000_000_000, "shm_size": "1g"},
        {"tmpfs": {"/tmp": "size=64m"}, "read_only": True},
        {"user": "1000:100"},
    ],
)
def test_kernel_pods_satisfy_restricted(extra: dict[str, Any]) -> None:
    """Every kernel pod the runtime makes passes each control of Pod Security
    ``restricted``; the attack pods break at least one (the checks can fail)."""
    from kubernetes import client as k

    from nbcontainers.runtimes.base import ContainerSpec, GPURequest
    from nbcontainers.runtimes.kubernetes.pods import PodSettings, pod_for
    from tests.k8s.pss import restricted

    spec = ContainerSpec("img:1", ("python",), name="nbc-r", gpus=GPURequest(count=1), **extra)
    pod, _ = pod_for(spec, "nbc-r", PodSettings(namespace="nbc-alice"))
    wire = k.ApiClient().sanitize_for_serialization(pod)
    assert restricted(wire) == []
    assert wire["spec"]["automountServiceAccountToken"] is False
    for what, attack in ATTACK_PODS.items():
        assert restricted(attack), f"the checks admit a {what} pod"
