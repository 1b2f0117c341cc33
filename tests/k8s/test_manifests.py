"""`nbcontainers k8s manifests`: the RBAC, the kernels' NetworkPolicy and the Zero to
JupyterHub values, validated offline against the Kubernetes schemas kubernetes-validate
ships (no cluster runs here), and the Role holding exactly the verbs the runtime calls."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner

from nbcontainers.cli import main
from nbcontainers.k8s.manifests import ManifestOptions, cluster_objects, z2jh_values
from nbcontainers.runtimes.k8s_names import ROLE_RULES
from tests.k8s.fake_api import FakeCluster, runtime_for

VERSIONS = ("1.25.0", "1.31.0", "1.37.0")
OPTIONS = ManifestOptions(namespace="jhub", api_server_cidr="10.96.0.1")


@pytest.mark.parametrize("version", VERSIONS)
def test_every_object_validates(version: str) -> None:
    objects = cluster_objects(OPTIONS)
    assert [o["kind"] for o in objects] == [
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "NetworkPolicy",
        "NetworkPolicy",
    ]
    for obj in objects:
        kubernetes_validate.validate(obj, version, strict=True)


def test_a_broken_object_does_fail_validation() -> None:
    """The check above can fail: a misspelt field is caught."""
    role = cluster_objects(OPTIONS)[1]
    role["rules"][0]["verb"] = role["rules"][0].pop("verbs")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(role, "1.37.0", strict=True)


def test_the_role_is_namespaced_and_minimal() -> None:
    _, role, binding, *_ = cluster_objects(OPTIONS)
    assert role["kind"] == "Role" and role["metadata"]["namespace"] == "jhub"
    verbs = {(r["resources"][0], v) for r in role["rules"] for v in r["verbs"]}
    assert verbs == {
        ("pods", "create"), ("pods", "get"), ("pods", "list"), ("pods", "watch"),
        ("pods", "delete"), ("pods/log", "get"), ("pods/exec", "create"), ("pods/exec", "get"),
        ("events", "list"), ("events", "watch"), ("secrets", "create"),
        ("networkpolicies", "create"),
    }  # fmt: skip
    text = json.dumps(cluster_objects(OPTIONS))
    assert "*" not in text and "cluster-admin" not in text and "ClusterRole" not in text
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "nbc-kernels",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "nbc-notebook", "namespace": "jhub"}
    ]


def test_the_role_grants_every_call_the_runtime_makes(tmp_path: Path) -> None:
    """A cluster that allows only the Role's verbs runs a kernel's whole life."""
    allowed = {(r.resource, v) for r in ROLE_RULES for v in r.verbs}
    cluster = FakeCluster(images=("img:1",))
    every = {(verb, res) for res in ("pods", "pods/log", "pods/exec", "events", "secrets",
             "networkpolicies") for verb in ("create", "get", "list", "watch", "delete",
             "update", "patch")}  # fmt: skip
    cluster.forbidden = {(verb, res) for verb, res in every if (res, verb) not in allowed}
    runtime = runtime_for(cluster)
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
    runtime.remove(name)


def test_default_deny_covers_every_kernel_pod() -> None:
    policy = cluster_objects(OPTIONS)[3]
    assert policy["spec"] == {
        "podSelector": {"matchLabels": {"app.kubernetes.io/component": "nbc-kernel"}},
        "policyTypes": ["Ingress"],
        "ingress": [],
    }


def test_kernels_reach_dns_and_public_addresses_only() -> None:
    policy = cluster_objects(OPTIONS)[4]
    assert policy["spec"]["policyTypes"] == ["Egress"]
    dns, public = policy["spec"]["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    [block] = public["to"]
    assert block["ipBlock"]["cidr"] == "0.0.0.0/0"
    assert "169.254.0.0/16" in block["ipBlock"]["except"]  # the cloud metadata server
    assert "10.0.0.0/8" in block["ipBlock"]["except"]  # other pods and nodes


def test_z2jh_values() -> None:
    single = z2jh_values(OPTIONS)["singleuser"]
    assert single["serviceAccountName"] == "nbc-notebook"
    kernels, api = single["networkPolicy"]["egress"]
    assert kernels["to"][0]["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/component": "nbc-kernel"
    }
    assert api["to"] == [{"ipBlock": {"cidr": "10.96.0.1/32"}}]
    assert {p["port"] for p in api["ports"]} == {443, 6443}
    config = single["extraFiles"]["nbcontainers-kubernetes"]
    assert config["mountPath"].startswith("/etc/jupyter/jupyter_server_config.d/")
    assert config["data"]["ContainerProvisioner"]["runtime_name"] == "kubernetes"
    assert single["extraEnv"] == {"NBC_K8S_NAMESPACE": "jhub"}
    # The egress rules are NetworkPolicy egress rules: they validate as one.
    policy = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
              "metadata": {"name": "x"}, "spec": {"podSelector": {}, "policyTypes": ["Egress"],
              "egress": single["networkPolicy"]["egress"]}}  # fmt: skip
    kubernetes_validate.validate(policy, "1.37.0", strict=True)


def test_command_writes_both_files(tmp_path: Path) -> None:
    out = tmp_path / "k8s"
    result = CliRunner().invoke(main, ["k8s", "manifests", "-n", "jhub", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "kubectl apply -n jhub" in result.output
    documents = list(yaml.safe_load_all((out / "nbcontainers.yaml").read_text()))
    assert documents == cluster_objects(ManifestOptions(namespace="jhub"))
    values = yaml.safe_load((out / "z2jh-values.yaml").read_text())
    assert values == z2jh_values(ManifestOptions(namespace="jhub"))
    assert "to" not in values["singleuser"]["networkPolicy"]["egress"][1]  # ports, anywhere


def test_command_prints_for_kubectl_and_helm() -> None:
    printed = CliRunner().invoke(main, ["k8s", "manifests", "-o", "-"])
    assert printed.exit_code == 0, printed.output
    assert list(yaml.safe_load_all(printed.output)) == cluster_objects(ManifestOptions())
    values = CliRunner().invoke(main, ["k8s", "manifests", "-o", "-", "--values"])
    assert yaml.safe_load(values.output) == z2jh_values(ManifestOptions())


def test_command_refuses_a_bad_namespace(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["k8s", "manifests", "-n", "Team_A", "-o", str(tmp_path)])
    assert result.exit_code == 2
    assert "Error: namespace 'Team_A' is not a valid Kubernetes name" in result.output
    assert list(tmp_path.iterdir()) == []
