"""`nbcontainers k8s manifests`: the kernel namespaces, their RBAC, quota and NetworkPolicies
and the Zero to JupyterHub values, validated offline against the Kubernetes schemas
kubernetes-validate ships (no cluster runs here), and the Role holding exactly the verbs the
runtime calls. What each account can reach is proven in tests/security/test_k8s_blast_radius.py.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner

from nbcontainers.cli import main
from nbcontainers.cluster.manifests import ManifestOptions, cluster_objects, z2jh_values
from nbcontainers.errors import ConfigError
from nbcontainers.runtimes.kubernetes.names import ROLE_RULES
from tests.k8s.fake_api import FakeCluster, runtime_for

VERSIONS = ("1.25.0", "1.31.0", "1.37.0")
OPTIONS = ManifestOptions(namespace="jhub", api_server_cidr="10.96.0.1", users=("alice",))
KINDS = [
    "ServiceAccount",
    "Namespace",
    "ServiceAccount",
    "ResourceQuota",
    "LimitRange",
    "Role",
    "RoleBinding",
    "NetworkPolicy",
    "NetworkPolicy",
]


def of_kind(kind: str, options: ManifestOptions = OPTIONS) -> list[dict[str, Any]]:
    return [o for o in cluster_objects(options) if o["kind"] == kind]


@pytest.mark.parametrize("version", VERSIONS)
def test_every_object_validates(version: str) -> None:
    objects = cluster_objects(OPTIONS)
    assert [o["kind"] for o in objects] == KINDS
    teams = ManifestOptions(namespace="jhub", per="team", teams={"ml": ("a", "b"), "cv": ("c",)})
    assert [o["kind"] for o in cluster_objects(teams)] == KINDS * 2
    for obj in objects + cluster_objects(teams):
        kubernetes_validate.validate(obj, version, strict=True)


def test_a_broken_object_does_fail_validation() -> None:
    """The check above can fail: a misspelt field is caught."""
    [role] = of_kind("Role")
    role["rules"][0]["verb"] = role["rules"][0].pop("verbs")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(role, "1.37.0", strict=True)


def test_the_role_is_namespaced_and_minimal() -> None:
    [role], [binding] = of_kind("Role"), of_kind("RoleBinding")
    assert role["kind"] == "Role" and role["metadata"]["namespace"] == "nbc-alice"
    assert binding["metadata"]["namespace"] == "nbc-alice"
    verbs = {(r["resources"][0], v) for r in role["rules"] for v in r["verbs"]}
    assert verbs == {
        ("pods", "create"),
        ("pods", "get"),
        ("pods", "list"),
        ("pods", "watch"),
        ("pods", "delete"),
        ("pods/log", "get"),
        ("pods/exec", "create"),
        ("pods/exec", "get"),
        ("events", "list"),
        ("events", "watch"),
        ("secrets", "create"),
    }  # fmt: skip  (no networkpolicies: a user's own egress policy would open the network)
    text = json.dumps(cluster_objects(OPTIONS))
    assert "*" not in text and "cluster-admin" not in text and "ClusterRole" not in text
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "nbc-kernels",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "nbc-notebook-alice", "namespace": "jhub"}
    ]
    # The hub's namespace gets the account and nothing else.
    in_hub = [
        o["kind"] for o in cluster_objects(OPTIONS) if o["metadata"].get("namespace") == "jhub"
    ]
    assert in_hub == ["ServiceAccount"]


@pytest.mark.parametrize("mode", ["namespace", "pod"])
def test_the_role_grants_every_call_the_runtime_makes(tmp_path: Path, mode: str) -> None:
    """A cluster that allows only the Role's verbs runs a kernel's whole life: the generated
    Role, with the runtime as the hub's hook sets it up (NBC_K8S_NETWORK_POLICY=namespace),
    or every rule of ROLE_RULES where each kernel gets its own policy."""
    from nbcontainers.runtimes.kubernetes.pods import PodSettings

    if mode == "namespace":
        [role] = of_kind("Role")
        allowed = {(r["resources"][0], v) for r in role["rules"] for v in r["verbs"]}
    else:
        allowed = {(r.resource, v) for r in ROLE_RULES for v in r.verbs}
    cluster = FakeCluster(images=("img:1",))
    every = {(verb, res) for res in ("pods", "pods/log", "pods/exec", "events", "secrets",
             "networkpolicies") for verb in ("create", "get", "list", "watch", "delete",
             "update", "patch")}  # fmt: skip
    cluster.forbidden = {(verb, res) for verb, res in every if (res, verb) not in allowed}
    owner = {"component": "singleuser-server"}
    settings = PodSettings(namespace="nbc", owner_selector=owner, pod_policies=mode == "pod")
    runtime = runtime_for(cluster, settings=settings)
    assert runtime.ping().name == "kubernetes"  # the rules review finds nothing missing
    from nbcontainers.runtimes.base import ContainerSpec, Mount

    conn = tmp_path / "kernel.json"
    conn.write_text("{}")
    spec = ContainerSpec("img:1", ("python",), name="nbc-a", user="1000:100", ports={5001: ("", 1)})
    name = runtime.run(replace(spec, mounts=(Mount(str(conn), "/run/k.json"),)))
    runtime.signal(name, 2)
    runtime.logs(name)
    runtime.list({})
    cluster.exit(name, 0)
    assert runtime.wait(name, 5) == 0
    assert len(cluster.policies) == (mode == "pod")
    runtime.remove(name)


def test_only_the_tenants_notebook_pods_reach_its_kernels() -> None:
    policy = of_kind("NetworkPolicy")[0]
    assert policy["metadata"]["namespace"] == "nbc-alice"
    assert policy["spec"] == {
        "podSelector": {"matchLabels": {"app.kubernetes.io/component": "nbc-kernel"}},
        "policyTypes": ["Ingress"],
        "ingress": [
            {
                "from": [
                    {
                        "namespaceSelector": {
                            "matchLabels": {"kubernetes.io/metadata.name": "jhub"}
                        },
                        "podSelector": {
                            "matchLabels": {"nbcontainers.io/kernel-namespace": "nbc-alice"}
                        },
                    }
                ]
            }
        ],
    }


def test_kernels_reach_dns_and_public_addresses_only() -> None:
    policy = of_kind("NetworkPolicy")[1]
    assert policy["spec"]["policyTypes"] == ["Egress"]
    dns, public = policy["spec"]["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    [block] = public["to"]
    assert block["ipBlock"]["cidr"] == "0.0.0.0/0"
    assert "169.254.0.0/16" in block["ipBlock"]["except"]  # the cloud metadata server
    assert "10.0.0.0/8" in block["ipBlock"]["except"]  # other pods and nodes


def test_z2jh_values() -> None:
    values = z2jh_values(OPTIONS)
    single = values["singleuser"]
    # No one account for every notebook pod: the hub's hook picks each user's.
    assert "serviceAccountName" not in single and "extraEnv" not in single
    assert "nbc-notebook-alice" in values["hub"]["extraConfig"]["nbcontainers-kernel-namespaces"]
    kernels, api = single["networkPolicy"]["egress"]
    assert kernels["to"] == [
        {
            "namespaceSelector": {"matchLabels": {"nbcontainers.io/kernels": "true"}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/component": "nbc-kernel"}},
        }
    ]
    assert api["to"] == [{"ipBlock": {"cidr": "10.96.0.1/32"}}]
    assert {p["port"] for p in api["ports"]} == {443, 6443}
    config = single["extraFiles"]["nbcontainers-kubernetes"]
    assert config["mountPath"].startswith("/etc/jupyter/jupyter_server_config.d/")
    assert config["data"]["ContainerProvisioner"]["runtime_name"] == "kubernetes"
    # The egress rules are NetworkPolicy egress rules: they validate as one.
    policy = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
              "metadata": {"name": "x"}, "spec": {"podSelector": {}, "policyTypes": ["Egress"],
              "egress": single["networkPolicy"]["egress"]}}  # fmt: skip
    kubernetes_validate.validate(policy, "1.37.0", strict=True)


def test_command_writes_both_files(tmp_path: Path) -> None:
    out = tmp_path / "k8s"
    result = CliRunner().invoke(
        main, ["k8s", "manifests", "-n", "jhub", "--user", "alice", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "kubectl apply -f" in result.output
    options = ManifestOptions(namespace="jhub", users=("alice",))
    documents = list(yaml.safe_load_all((out / "nbcontainers.yaml").read_text()))
    assert documents == cluster_objects(options)
    values = yaml.safe_load((out / "z2jh-values.yaml").read_text())
    assert values == z2jh_values(options)
    assert "nbcontainers-kernel-namespaces: |\n" in (out / "z2jh-values.yaml").read_text()
    assert "to" not in values["singleuser"]["networkPolicy"]["egress"][1]  # ports, anywhere


def test_command_prints_for_kubectl_and_helm() -> None:
    args = ["k8s", "manifests", "--per", "team", "--team", "ml=alice,bob", "-o", "-"]
    printed = CliRunner().invoke(main, args)
    assert printed.exit_code == 0, printed.output
    options = ManifestOptions(per="team", teams={"ml": ("alice", "bob")})
    assert list(yaml.safe_load_all(printed.output)) == cluster_objects(options)
    values = CliRunner().invoke(main, [*args, "--values"])
    assert yaml.safe_load(values.output) == z2jh_values(options)


def test_command_refuses_a_bad_namespace(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["k8s", "manifests", "-n", "Team_A", "--user", "a", "-o", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "Error: namespace 'Team_A' is not a valid Kubernetes name" in result.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "Name the hub users who may start kernels: --user NAME"),
        (["--per", "team"], "Name the teams: --team TEAM=user1,user2"),
        (["--per", "team", "--team", "a=x", "--team", "b=x"], "'x' is in teams 'a' and 'b'"),
        (["--per", "team", "--team", "a"], "--team 'a': write TEAM=user1,user2"),
        (["--user", "a", "--team", "b=c"], "--team goes with --per team"),
        (["--user", "jhub", "--namespace-prefix", ""], "the hub's or the cluster's own"),
        (["--user", "system", "--namespace-prefix", "kube-"], "the hub's or the cluster's own"),
        (["--user", "a", "--pss-version", "latest"], "pin a Kubernetes minor version"),
        (["--user", "a", "--quota-memory", "lots"], "is not a Kubernetes quantity"),
    ],
)
def test_command_refuses_what_would_not_confine(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = CliRunner().invoke(
        main, ["k8s", "manifests", "-n", "jhub", *args, "-o", str(tmp_path)]
    )
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert list(tmp_path.iterdir()) == []


def test_names_become_distinct_namespaces() -> None:
    options = ManifestOptions(users=("alice", "Alice", "bob smith", "x" * 70))
    spaces = [o["metadata"]["name"] for o in of_kind("Namespace", options)]
    assert spaces[0] == "nbc-alice" and len(set(spaces)) == 4
    assert all(len(name) <= 63 for name in spaces)
    assert spaces[1].startswith("nbc-alice-") and spaces[2].startswith("nbc-bob-smith-")


def test_kernel_namespaces_are_restricted_with_a_quota() -> None:
    [namespace] = of_kind("Namespace")
    labels = namespace["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert labels["pod-security.kubernetes.io/enforce-version"] == "v1.31"
    assert labels["pod-security.kubernetes.io/warn"] == "restricted"
    assert labels["pod-security.kubernetes.io/audit"] == "restricted"
    [quota] = of_kind("ResourceQuota")
    hard = quota["spec"]["hard"]
    assert hard["pods"] == "10" and hard["limits.memory"] == "64Gi"
    assert hard["requests.nvidia.com/gpu"] == "0" and hard["services"] == "0"
    [limits] = of_kind("LimitRange")
    assert limits["spec"]["limits"][0]["max"] == {"cpu": "8", "memory": "32Gi"}


def run_hook(values: dict[str, Any], user: str, env: list[Any] | None = None) -> Any:
    """The values' hub hook, run as the chart's jupyterhub_config.py runs extraConfig, on a
    pod of the client's own models as KubeSpawner makes it."""
    from types import SimpleNamespace

    from kubernetes import client as k

    config = SimpleNamespace(KubeSpawner=SimpleNamespace(modify_pod_hook=None))
    for code in values["hub"]["extraConfig"].values():
        exec(code, {"c": config})
    pod = k.V1Pod(
        metadata=k.V1ObjectMeta(
            namespace="jhub",
            labels={
                "component": "singleuser-server",
                "hub.jupyter.org/username": "x",
                "hub.jupyter.org/servername": "",
                "other": "y",
            },
        ),
        spec=k.V1PodSpec(
            automount_service_account_token=False,
            containers=[
                k.V1Container(name="sidecar", image="s"),
                k.V1Container(
                    name="notebook",
                    image="j",
                    env=env if env is not None else [k.V1EnvVar(name="A", value="1")],
                ),
            ],
        ),
    )
    spawner = SimpleNamespace(user=SimpleNamespace(name=user), namespace="jhub")
    return config.KubeSpawner.modify_pod_hook(spawner, pod)


def test_the_hub_hook_gives_each_listed_user_their_account_only() -> None:
    from kubernetes import client as k

    values = z2jh_values(ManifestOptions(namespace="jhub", users=("alice", "bob")))
    pod = run_hook(values, "alice", [k.V1EnvVar(name="NBC_K8S_NAMESPACE", value="jhub")])
    assert pod.spec.service_account_name == "nbc-notebook-alice"
    assert pod.spec.automount_service_account_token is True
    env = {e.name: e.value for e in pod.spec.containers[1].env}
    assert env == {
        "NBC_K8S_NAMESPACE": "nbc-alice",  # its own value wins over one already there
        "NBC_K8S_NETWORK_POLICY": "namespace",
    }
    assert pod.metadata.labels["nbcontainers.io/kernel-namespace"] == "nbc-alice"
    assert pod.metadata.labels["other"] == "y"
    assert pod.spec.containers[0].env is None  # the sidecar is left alone
    # A user not listed: no account, no token, nothing of ours.
    stranger = run_hook(values, "mallory")
    assert stranger.spec.service_account_name is None
    assert stranger.spec.automount_service_account_token is False
    assert [e.name for e in stranger.spec.containers[1].env] == ["A"]
    assert "nbcontainers.io/kernel-namespace" not in stranger.metadata.labels


def test_a_user_name_cannot_inject_code_into_the_hub() -> None:
    """User names are data in the hook (Python literals), never code the hub runs."""
    evil = "x'); import os; os.system('touch /tmp/pwned'); ('"
    values = z2jh_values(ManifestOptions(namespace="jhub", users=(evil, "bob")))
    assert run_hook(values, evil).spec.service_account_name.startswith("nbc-notebook-x-")
    assert run_hook(values, "bob").spec.service_account_name == "nbc-notebook-bob"
    with pytest.raises(ConfigError, match="control characters"):
        ManifestOptions(users=("bob\nimport os",))


def test_team_members_share_their_teams_account() -> None:
    options = ManifestOptions(namespace="jhub", per="team", teams={"ml": ("alice", "bob")})
    values = z2jh_values(options)
    for user in ("alice", "bob"):
        assert run_hook(values, user).spec.service_account_name == "nbc-notebook-ml"
    [binding] = of_kind("RoleBinding", options)
    assert binding["metadata"]["namespace"] == "nbc-ml"
    assert binding["subjects"][0]["name"] == "nbc-notebook-ml"


def test_the_shipped_example_is_current_and_valid() -> None:
    """examples/k8s is what the command writes now, and every object validates."""
    folder = Path(__file__).parents[2] / "examples" / "k8s"
    options = ManifestOptions(
        namespace="jhub",
        per="team",
        teams={"ml": ("alice", "bob"), "vision": ("carol",)},
        api_server_cidr="10.96.0.1",
    )
    documents = list(yaml.safe_load_all((folder / "nbcontainers.yaml").read_text()))
    assert documents == cluster_objects(options), "regenerate examples/k8s (see its README)"
    assert yaml.safe_load((folder / "z2jh-values.yaml").read_text()) == z2jh_values(options)
    for version in VERSIONS:
        for obj in documents:
            kubernetes_validate.validate(obj, version, strict=True)
