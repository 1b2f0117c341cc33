"""The kernel pod a ContainerSpec becomes, field by field (security settings, GPUs, limits,
/dev/shm), what a pod can't honour, and how a pod's status reads; every object the runtime
creates also validates offline against the Kubernetes schemas."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import kubernetes_validate
import pytest
from kubernetes import client as k

from nbcontainers.errors import GPUUnavailable, RuntimeFailure, Unsupported
from nbcontainers.labels import KERNEL_ID, PRIVATE_DIR
from nbcontainers.runtimes.base import ContainerSpec, GPURequest, Mount
from nbcontainers.runtimes.kubernetes.pods import (
    PodSettings,
    files_secret,
    kernel_policy,
    pod_for,
    pod_name,
    quantity,
)
from nbcontainers.runtimes.kubernetes.status import start_problem, state_from

VERSIONS = ("1.25.0", "1.31.0", "1.37.0")  # oldest, middle and newest schemas it ships
SETTINGS = PodSettings(namespace="nbc", node_selector={"pool": "gpu"}, image_pull_secrets=("reg",))


def spec(**kw: object) -> ContainerSpec:
    values: dict[str, object] = {
        "image": "registry.example/nbc/pytorch:1",
        "command": ("python", "-m", "ipykernel_launcher"),
        "labels": {KERNEL_ID: "k-1", PRIVATE_DIR: "/tmp/private/x"},
        "env": {"HOME": "/home/nbc", "LANG": "C.UTF-8"},
        "tmpfs": {"/home/nbc": "rw,exec,mode=1777,size=4g"},
        "working_dir": "/home/nbc",
        "user": "1000:100",
        "ports": {5001: ("127.0.0.1", 5001)},
        "gpus": GPURequest(count=2),
        "mem_limit": "16g",
        "nano_cpus": 4_000_000_000,
        "shm_size": "2g",
    }
    values.update(kw)
    return ContainerSpec(**values)  # type: ignore[arg-type]


def wire(obj: object) -> dict[str, object]:
    data: dict[str, object] = k.ApiClient().sanitize_for_serialization(obj)
    return data


@pytest.fixture
def pod() -> k.V1Pod:
    made, _ = pod_for(spec(), "nbc-pytorch-k1", SETTINGS)
    return made


def test_security_settings(pod: k.V1Pod) -> None:
    podsec, [container] = pod.spec.security_context, pod.spec.containers
    sec = container.security_context
    assert pod.spec.automount_service_account_token is False
    assert pod.spec.enable_service_links is False
    assert (pod.spec.host_network, pod.spec.host_pid, pod.spec.host_ipc) == (False, False, False)
    assert pod.spec.restart_policy == "Never"  # a crash surfaces, it does not restart
    assert podsec.run_as_non_root is True and sec.run_as_non_root is True
    assert (podsec.run_as_user, podsec.run_as_group, podsec.fs_group) == (1000, 100, 100)
    assert podsec.seccomp_profile.type == "RuntimeDefault"
    assert sec.seccomp_profile.type == "RuntimeDefault"
    assert sec.allow_privilege_escalation is False
    assert sec.privileged is False
    assert sec.capabilities.drop == ["ALL"] and not sec.capabilities.add


def test_resources_gpus_and_shm(pod: k.V1Pod) -> None:
    [container] = pod.spec.containers
    assert container.resources.limits == {"nvidia.com/gpu": "2", "memory": "16Gi", "cpu": "4000m"}
    assert [t.key for t in pod.spec.tolerations] == ["nvidia.com/gpu"]
    volumes = {v.name: v for v in pod.spec.volumes}
    shm = volumes["dshm"].empty_dir
    assert (shm.medium, shm.size_limit) == ("Memory", "2Gi")
    mounts = {m.mount_path: m.name for m in container.volume_mounts}
    assert mounts["/dev/shm"] == "dshm"
    home = volumes[mounts["/home/nbc"]].empty_dir
    assert (home.medium, home.size_limit) == ("Memory", "4Gi")
    assert pod.spec.node_selector == {"pool": "gpu"}
    assert [s.name for s in pod.spec.image_pull_secrets] == ["reg"]


def test_command_env_labels(pod: k.V1Pod) -> None:
    [container] = pod.spec.containers
    assert container.args == ["python", "-m", "ipykernel_launcher"] and container.command is None
    assert {e.name: e.value for e in container.env} == {"HOME": "/home/nbc", "LANG": "C.UTF-8"}
    assert [p.container_port for p in container.ports] == [5001]
    labels = pod.metadata.labels
    assert labels[KERNEL_ID] == "k-1" and PRIVATE_DIR not in labels  # a path isn't a label
    assert labels["app.kubernetes.io/component"] == "nbc-kernel"
    assert PRIVATE_DIR in pod.metadata.annotations["nbcontainers.io/labels"]


@pytest.mark.parametrize("version", VERSIONS)
def test_what_the_runtime_creates_validates(pod: k.V1Pod, version: str, tmp_path: Path) -> None:
    pod.metadata.uid = "uid-1"
    owner = {"component": "singleuser-server"}
    for obj in (pod, files_secret(pod, {"file-0": b"{}"}), kernel_policy(pod, [5001], owner)):
        kubernetes_validate.validate(wire(obj), version, strict=True)
    # The owner in another namespace: that namespace's pod, not one of the kernel's.
    across = kernel_policy(pod, [5001], owner, owner_namespace="jhub")
    kubernetes_validate.validate(wire(across), version, strict=True)
    [peer] = wire(across)["spec"]["ingress"][0]["from"]
    assert peer["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "jhub"}}
    assert (
        "namespaceSelector"
        not in wire(kernel_policy(pod, [1], owner, pod.metadata.namespace))["spec"]["ingress"][0][
            "from"
        ][0]
    )


@pytest.mark.parametrize(
    ("changes", "fix"),
    [
        ({"network_mode": "container:abc"}, "transport = 'tcp'"),
        ({"network_mode": "host"}, "no hostNetwork"),
        ({"gpus": GPURequest(count=-1)}, "set gpus to a count"),
        ({"gpus": GPURequest(device_ids=("0",))}, "by count, not by id"),
        ({"user": "0:0"}, "runAsNonRoot"),
        ({"mounts": (Mount("/home/alice/work", "/home/alice/work", False),)}, "mount_workspace"),
        ({"mounts": (Mount("/tmp/p/sockets", "/tmp/p/sockets", False),)}, "transport = 'tcp'"),
        ({"mounts": (Mount("/srv/wheels", "/srv/wheels"),)}, "pip_settings = False"),
    ],
)
def test_what_a_pod_cannot_honour_is_refused_with_the_fix(
    changes: dict[str, object], fix: str
) -> None:
    with pytest.raises(Unsupported, match=fix.replace("(", r"\(")):
        pod_for(spec(**changes), "nbc-x", SETTINGS)


def test_names_and_sizes() -> None:
    assert pod_name("nbc-Python_3.11-ab") == "nbc-python-3-11-ab"
    with pytest.raises(RuntimeFailure):
        pod_name("__")
    assert (quantity("512m"), quantity("2g"), quantity("1024")) == ("512Mi", "2Gi", "1024")


def _pending(**status: object) -> k.V1Pod:
    return k.V1Pod(
        metadata=k.V1ObjectMeta(name="nbc-x"),
        spec=k.V1PodSpec(containers=[k.V1Container(name="kernel", image="img:1")]),
        status=k.V1PodStatus(phase="Pending", **status),
    )


def test_unschedulable_waits_for_an_autoscaler() -> None:
    unschedulable = k.V1PodCondition(
        type="PodScheduled",
        status="False",
        reason="Unschedulable",
        message="0/4 nodes are available: 4 Insufficient nvidia.com/gpu.",
    )
    pod = _pending(conditions=[unschedulable])
    assert isinstance(start_problem(pod), GPUUnavailable)
    assert start_problem(pod, [SimpleNamespace(reason="TriggeredScaleUp")]) is None


def test_a_root_image_is_named() -> None:
    waiting = k.V1ContainerStateWaiting(
        reason="CreateContainerConfigError",
        message="container has runAsNonRoot and image will run as root",
    )
    status = k.V1ContainerStatus(
        name="kernel", image="img:1", image_id="", ready=False, restart_count=0,
        state=k.V1ContainerState(waiting=waiting),
    )  # fmt: skip
    problem = start_problem(_pending(container_statuses=[status]))
    assert isinstance(problem, RuntimeFailure) and "non-root uid:gid" in str(problem)
    assert state_from(_pending(container_statuses=[status])).status == "created"


def test_an_evicted_pod_reads_as_exited_with_the_reason() -> None:
    pod = _pending()
    pod.status.phase, pod.status.reason = "Failed", "Evicted"
    pod.status.message = "The node was low on resource: memory."
    state = state_from(pod)
    assert (state.status, state.exit_code) == ("exited", 137)
    assert "low on resource: memory" in state.error


def test_a_pod_evicted_from_a_lost_node_reads_as_dead() -> None:
    pod = _pending()
    pod.status.phase = "Running"
    pod.metadata.deletion_timestamp = "2026-12-01T12:00:00Z"
    pod.status.conditions = [
        k.V1PodCondition(
            type="DisruptionTarget",
            status="True",
            reason="DeletionByTaintManager",
            message="Taint manager: deleting due to NoExecute taint",
        )
    ]
    state = state_from(pod)
    assert state.status == "dead" and not state.running
    assert "node is gone" in state.error and "NoExecute" in state.error
