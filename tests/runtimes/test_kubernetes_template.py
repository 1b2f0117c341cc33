"""The admin's kernel pod template: its tolerations, affinity, classes and labels reach every
kernel pod, nbcontainers' own settings win, and the security settings can't be loosened."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from kubernetes import client as k

from nbcontainers.errors import ConfigError
from nbcontainers.runtimes.base import ContainerSpec, GPURequest
from nbcontainers.runtimes.kubernetes.client import settings_from_env
from nbcontainers.runtimes.kubernetes.pods import pod_for
from nbcontainers.runtimes.kubernetes.template import load_template

TEMPLATE = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "ignored", "labels": {"team": "vision"}, "annotations": {"a": "b"}},
    "spec": {
        "priorityClassName": "notebooks",
        "runtimeClassName": "nvidia",
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml"}],
        "nodeSelector": {"pool": "ml"},
        # A template that tries to loosen what nbcontainers locks down:
        "hostNetwork": True,
        "automountServiceAccountToken": True,
        "securityContext": {"runAsUser": 0, "runAsNonRoot": False},
        "containers": [
            {
                "name": "kernel",
                "image": "ignored:1",
                "resources": {"requests": {"cpu": "500m"}},
                "env": [{"name": "TEAM", "value": "vision"}, {"name": "LANG", "value": "x"}],
                "securityContext": {"privileged": True, "capabilities": {"add": ["SYS_ADMIN"]}},
            }
        ],
    },
}


def pod_with(tmp_path: Path, template: dict[str, object]) -> k.V1Pod:
    path = tmp_path / "kernel-pod.yaml"
    path.write_text(yaml.safe_dump(template))
    settings, _ = settings_from_env({"NBC_K8S_POD_TEMPLATE": str(path), "NBC_K8S_NAMESPACE": "n"})
    spec = ContainerSpec(
        "registry.example/nbc/python:1",
        ("python",),
        name="nbc-t",
        env={"LANG": "C.UTF-8"},
        user="1000:100",
        mem_limit="2g",
        gpus=GPURequest(count=1),
    )
    pod, _ = pod_for(spec, "nbc-t", settings)
    return pod


def test_the_template_reaches_the_pod(tmp_path: Path) -> None:
    pod = pod_with(tmp_path, TEMPLATE)
    assert (pod.metadata.name, pod.metadata.namespace) == ("nbc-t", "n")
    assert pod.metadata.labels["team"] == "vision"
    assert pod.metadata.labels["app.kubernetes.io/component"] == "nbc-kernel"
    assert pod.metadata.annotations["a"] == "b"
    assert (pod.spec.priority_class_name, pod.spec.runtime_class_name) == ("notebooks", "nvidia")
    assert pod.spec.node_selector == {"pool": "ml"}  # none of ours: the template's
    assert [t.key for t in pod.spec.tolerations] == ["dedicated", "nvidia.com/gpu"]
    [container] = pod.spec.containers
    assert container.image == "registry.example/nbc/python:1"
    assert container.resources.requests == {"cpu": "500m"}
    assert container.resources.limits == {"nvidia.com/gpu": "1", "memory": "2Gi"}
    assert {e.name: e.value for e in container.env} == {"TEAM": "vision", "LANG": "C.UTF-8"}
    kubernetes_validate.validate(k.ApiClient().sanitize_for_serialization(pod), "1.37.0", True)


def test_the_template_cannot_loosen_security(tmp_path: Path) -> None:
    pod = pod_with(tmp_path, TEMPLATE)
    assert pod.spec.host_network is False
    assert pod.spec.automount_service_account_token is False
    assert pod.spec.security_context.run_as_non_root is True
    assert pod.spec.security_context.run_as_user == 1000
    sec = pod.spec.containers[0].security_context
    assert sec.privileged is False and sec.allow_privilege_escalation is False
    assert sec.capabilities.drop == ["ALL"] and not sec.capabilities.add


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"containers": [{"name": "sidecar", "image": "x"}]}, "one container"),
        ({"volumes": [{"name": "h", "hostPath": {"path": "/"}}]}, "hostPath"),
        ({"volumes": [{"name": "n", "nfs": {"server": "s", "path": "/"}}]}, "volume 'n' is nfs"),
        (
            {"containers": [{"name": "kernel", "ports": [{"containerPort": 1, "hostPort": 1}]}]},
            "hostPort",
        ),
        ({"ephemeralContainers": [{"name": "debug", "image": "x"}]}, "ephemeralContainers"),
    ],
)
def test_what_a_template_may_not_add(tmp_path: Path, spec: object, message: str) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Pod", "spec": spec}))
    with pytest.raises(ConfigError, match=message):
        load_template(str(path))


def test_an_unreadable_template_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="NBC_K8S_POD_TEMPLATE"):
        load_template(str(tmp_path / "missing.yaml"))
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError, match="Pod manifest"):
        load_template(str(tmp_path / "list.yaml"))


def test_a_template_may_not_unconfine_the_kernel(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    annotations = {"container.apparmor.security.beta.kubernetes.io/kernel": "unconfined"}
    path.write_text(
        yaml.safe_dump(
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"annotations": annotations}}
        )
    )
    with pytest.raises(ConfigError, match="turns confinement off"):
        load_template(str(path))


def test_init_containers_run_under_the_kernels_rules(tmp_path: Path) -> None:
    """An admin's init container (allowed) gets the kernel's security context, so the pod
    still passes Pod Security 'restricted', which kernel namespaces enforce."""
    from tests.k8s.pss import restricted

    init = {"name": "fetch", "image": "busybox", "securityContext": {"privileged": True}}
    pod = pod_with(tmp_path, {**TEMPLATE, "spec": {**TEMPLATE["spec"], "initContainers": [init]}})
    wire = k.ApiClient().sanitize_for_serialization(pod)
    [fetched] = wire["spec"]["initContainers"]
    assert fetched["securityContext"] == wire["spec"]["containers"][0]["securityContext"]
    assert restricted(wire) == []
    # The check is not vacuous: the template's own init container breaks the standard.
    assert restricted({"spec": {"containers": [init]}})
