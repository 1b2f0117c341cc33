"""The Kubernetes runtime against an in-memory API made of the official client's models and
exceptions (tests/k8s/fake_api.py): run -> state, crashes and OOM kills, start failures that
name their fix, RBAC refusals, idempotent removal, label listing. No cluster runs here."""

from __future__ import annotations

import base64
import signal
from pathlib import Path

import pytest

from nbcontainers.errors import (
    BuildError,
    ConfigError,
    ContainerConflict,
    GPUUnavailable,
    ImageMissing,
    RuntimeFailure,
    Unsupported,
)
from nbcontainers.kernels.crash import crash_report
from nbcontainers.labels import KERNEL_ID, OWNER, PRIVATE_DIR
from nbcontainers.runtimes import available_runtimes, get_runtime
from nbcontainers.runtimes.base import ContainerSpec, GPURequest, Mount
from nbcontainers.runtimes.kubernetes.runtime import KubernetesRuntime
from tests.k8s.fake_api import FakeCluster, runtime_for

CONNECTION = b'{"shell_port": 5001, "key": "k", "transport": "tcp"}'


@pytest.fixture
def cluster() -> FakeCluster:
    return FakeCluster(images=("registry.example/nbc/python:1",))


@pytest.fixture
def runtime(cluster: FakeCluster) -> KubernetesRuntime:
    rt: KubernetesRuntime = runtime_for(cluster)
    return rt


def kernel_spec(tmp_path: Path, **kw: object) -> ContainerSpec:
    conn = tmp_path / "kernel.json"
    conn.write_bytes(CONNECTION)
    values: dict[str, object] = {
        "image": "registry.example/nbc/python:1",
        "command": ("python", "-m", "ipykernel_launcher", "-f", "/run/nbcontainers/kernel.json"),
        "name": "nbc-python-1234abcd-4242",
        "labels": {KERNEL_ID: "1234abcd-0000", OWNER: "alice", PRIVATE_DIR: str(tmp_path)},
        "mounts": (Mount(str(conn), "/run/nbcontainers/kernel.json"),),
        "ports": {p: ("127.0.0.1", p) for p in (5001, 5002, 5003, 5004, 5005)},
        "user": "1000:100",
        "shm_size": "2g",
        "mem_limit": "4g",
    }
    values.update(kw)
    return ContainerSpec(**values)  # type: ignore[arg-type]


def test_registered_like_the_other_engines() -> None:
    assert (
        available_runtimes()["kubernetes"] == "nbcontainers.runtimes.kubernetes:KubernetesRuntime"
    )
    from importlib.metadata import entry_points

    names = {ep.name for ep in entry_points(group="nbcontainers.runtimes")}
    assert "kubernetes" in names
    assert isinstance(get_runtime("kubernetes"), KubernetesRuntime)  # made without a cluster


def test_facts_say_remote(runtime: KubernetesRuntime) -> None:
    facts = runtime.ping()
    assert (facts.name, facts.version, facts.remote) == ("kubernetes", "v1.31.4-fake", True)
    assert facts.gpu_mode == "extended-resources"
    assert facts.limits == {"memory", "cpus", "shm"}  # no per-pod pids limit
    assert "namespace nbc" in facts.endpoint


def test_run_reports_address_ports_and_exact_labels(
    runtime: KubernetesRuntime, cluster: FakeCluster, tmp_path: Path
) -> None:
    name = runtime.run(kernel_spec(tmp_path))
    state = runtime.state(name)
    assert state is not None and state.status == "running" and state.running
    assert state.address == cluster.pods[name].status.pod_ip != ""
    assert state.ports == {p: p for p in (5001, 5002, 5003, 5004, 5005)}
    # A path can't be a label value; the annotation keeps every label exactly.
    assert state.labels == {KERNEL_ID: "1234abcd-0000", OWNER: "alice", PRIVATE_DIR: str(tmp_path)}
    assert PRIVATE_DIR not in cluster.pods[name].metadata.labels
    # The connection file travels in a Secret owned by the pod, mounted where it was asked.
    secret = cluster.secrets[f"{name}-files"]
    assert base64.b64decode(secret.data["file-0"]) == CONNECTION
    assert secret.metadata.owner_references[0].uid == cluster.pods[name].metadata.uid
    mount = next(m for m in cluster.pods[name].spec.containers[0].volume_mounts if m.sub_path)
    assert (mount.mount_path, mount.read_only) == ("/run/nbcontainers/kernel.json", True)


def test_only_the_owning_notebook_pod_reaches_the_ports(
    runtime: KubernetesRuntime, cluster: FakeCluster, tmp_path: Path
) -> None:
    name = runtime.run(kernel_spec(tmp_path))
    policy = cluster.policies[name]
    assert policy.spec.pod_selector.match_labels["nbcontainers.io/pod"] == name
    assert policy.spec.policy_types == ["Ingress"]
    [rule] = policy.spec.ingress
    [peer] = rule._from
    assert peer.pod_selector.match_labels == {
        "component": "singleuser-server",
        "hub.jupyter.org/username": "alice",
    }
    assert peer.namespace_selector is None and peer.ip_block is None  # this namespace only
    assert sorted(p.port for p in rule.ports) == [5001, 5002, 5003, 5004, 5005]
    assert policy.metadata.owner_references[0].name == name


def test_crash_reports_exit_code_and_log_tail(
    runtime: KubernetesRuntime, cluster: FakeCluster, tmp_path: Path
) -> None:
    name = runtime.run(kernel_spec(tmp_path))
    cluster.exit(name, 3, log="Traceback ...\nValueError: bad config")
    assert runtime.wait(name, timeout=10) == 3
    state = runtime.state(name)
    assert state is not None and (state.status, state.exit_code, state.oom_killed) == (
        "exited",
        3,
        False,
    )
    assert runtime.logs(name, tail=1) == "ValueError: bad config\n"
    report = crash_report(state, "python", "", runtime.logs(name, tail=20))
    assert "exited with code 3" in report and "OOM-killed: no." in report
    assert "ValueError: bad config" in report


def test_oom_kill_is_reported_as_oom(
    runtime: KubernetesRuntime, cluster: FakeCluster, tmp_path: Path
) -> None:
    name = runtime.run(kernel_spec(tmp_path))
    cluster.exit(name, 137, reason="OOMKilled")
    state = runtime.state(name)
    assert state is not None and state.oom_killed and state.exit_code == 137
    assert "running out of memory" in crash_report(state, "python", "4g", "")


def test_a_lost_node_is_a_dead_kernel_with_the_reason(
    runtime: KubernetesRuntime, cluster: FakeCluster, tmp_path: Path
) -> None:
    name = runtime.run(kernel_spec(tmp_path))
    cluster.node_lost(name)
    state = runtime.state(name)
    assert state is not None and state.status == "dead" and not state.running
    assert "node" in state.error.lower()


def test_no_free_gpu_fails_at_start_naming_the_fix(
    runtime: KubernetesRuntime, cluster: FakeCluster, tmp_path: Path
) -> None:
    with pytest.raises(GPUUnavailable) as caught:
        runtime.run(kernel_spec(tmp_path, gpus=GPURequest(count=1)))
    message = str(caught.value)
    assert "Insufficient nvidia.com/gpu" in message and "device plugin" in message
    assert cluster.pods == {} and cluster.secrets == {} and cluster.policies == {}


def test_an_image_no_node_can_pull_is_image_missing(
    runtime: KubernetesRuntime, cluster: FakeCluster, tmp_path: Path
) -> None:
    with pytest.raises(ImageMissing) as caught:
        runtime.run(kernel_spec(tmp_path, image="nbcontainers/python:local"))
    assert "nbcontainers/python:local" in str(caught.value)
    assert "ErrImagePull" in str(caught.value) and "docker push" in str(caught.value)
    assert cluster.pods == {}


@pytest.mark.parametrize(
    ("verb", "resource"),
    [("create", "pods"), ("create", "secrets"), ("create", "networkpolicies"), ("watch", "pods")],
)
def test_a_missing_rbac_verb_names_the_verb_and_the_role(
    runtime: KubernetesRuntime, cluster: FakeCluster, tmp_path: Path, verb: str, resource: str
) -> None:
    cluster.forbidden.add((verb, resource))
    with pytest.raises(RuntimeFailure) as caught:
        runtime.run(kernel_spec(tmp_path))
    message = str(caught.value)
    assert f"verb {verb!r} on {resource!r}" in message and "403 Forbidden" in message
    assert "Role 'nbc-kernels'" in message and "nbcontainers k8s manifests" in message
    assert cluster.pods == {}  # nothing is left behind


def test_a_taken_name_is_a_conflict(runtime: KubernetesRuntime, tmp_path: Path) -> None:
    runtime.run(kernel_spec(tmp_path))
    with pytest.raises(ContainerConflict):
        runtime.run(kernel_spec(tmp_path))


def test_stop_and_remove_are_idempotent(
    runtime: KubernetesRuntime, cluster: FakeCluster, tmp_path: Path
) -> None:
    name = runtime.run(kernel_spec(tmp_path))
    runtime.stop(name, timeout=5)
    assert cluster.deletes == [(name, 5)]
    runtime.stop(name, timeout=5)
    runtime.remove(name)
    assert runtime.state(name) is None and runtime.wait(name, 1) is None
    assert runtime.logs(name) == ""
    assert cluster.secrets == {} and cluster.policies == {}  # gone with their pod


def test_list_by_label(runtime: KubernetesRuntime, tmp_path: Path) -> None:
    a = runtime.run(kernel_spec(tmp_path))
    b = runtime.run(kernel_spec(tmp_path, name="nbc-b", labels={KERNEL_ID: "b", OWNER: "bob"}))
    assert {s.id for s in runtime.list({KERNEL_ID: None})} == {a, b}
    assert [s.id for s in runtime.list({OWNER: "bob"})] == [b]
    assert [s.id for s in runtime.list({PRIVATE_DIR: str(tmp_path)})] == [a]
    assert runtime.list({OWNER: "carol"}) == []


def test_signals(runtime: KubernetesRuntime, cluster: FakeCluster, tmp_path: Path) -> None:
    name = runtime.run(kernel_spec(tmp_path))
    runtime.signal(name, signal.SIGINT)  # the interrupt fallback: the kernel is process 1
    assert cluster.execs == [(name, ["sh", "-c", "kill -s INT 1"])]
    assert runtime.state(name).status == "running"  # type: ignore[union-attr]
    runtime.signal(name, signal.SIGKILL)
    assert cluster.deletes == [(name, 0)] and runtime.state(name) is None
    with pytest.raises(RuntimeFailure):
        runtime.signal(name, signal.SIGINT)


def test_wait_times_out_on_a_running_kernel(runtime: KubernetesRuntime, tmp_path: Path) -> None:
    name = runtime.run(kernel_spec(tmp_path))
    assert runtime.wait(name, timeout=0.2) is None


def test_exec(runtime: KubernetesRuntime, tmp_path: Path) -> None:
    name = runtime.run(kernel_spec(tmp_path))
    result = runtime.exec(name, ["echo", "hi"])
    assert (result.exit_code, result.output) == (0, "hi\n")
    with pytest.raises(Unsupported):
        runtime.exec(name, ["id"], user="0")


def test_images_are_the_clusters_business(runtime: KubernetesRuntime) -> None:
    info = runtime.image_info("registry.example/x:1")
    assert info is not None and info.tags == ("registry.example/x:1",)
    for call in (lambda: runtime.pull("x"), lambda: runtime.push("x", "r/x")):
        with pytest.raises(Unsupported, match="registry the cluster pulls from"):
            call()
    with pytest.raises(BuildError, match="build them on a Docker or Podman host"):
        runtime.builder()


def test_outside_a_cluster_the_owner_must_be_named(cluster: FakeCluster, tmp_path: Path) -> None:
    runtime = runtime_for(cluster, owner={})
    with pytest.raises(ConfigError, match="NBC_K8S_OWNER_SELECTOR"):
        runtime.run(kernel_spec(tmp_path))
    assert cluster.pods == {}


def test_inside_a_pod_the_owner_is_read_from_it(cluster: FakeCluster, tmp_path: Path) -> None:
    from kubernetes import client as k

    labels = {"component": "singleuser-server", "hub.jupyter.org/username": "bob", "x": "y"}
    cluster.pods["jupyter-bob"] = k.V1Pod(
        metadata=k.V1ObjectMeta(name="jupyter-bob", labels=labels),
        status=k.V1PodStatus(phase="Running"),
    )
    runtime = runtime_for(cluster, owner={}, own_pod="jupyter-bob")
    name = runtime.run(kernel_spec(tmp_path))
    [rule] = cluster.policies[name].spec.ingress
    assert rule._from[0].pod_selector.match_labels == {
        "component": "singleuser-server",
        "hub.jupyter.org/username": "bob",
    }


def test_settings_from_the_environment() -> None:
    from nbcontainers.runtimes.kubernetes.client import settings_from_env

    settings, timeout = settings_from_env(
        {
            "NBC_K8S_NAMESPACE": "team-a",
            "NBC_K8S_NODE_SELECTOR": "pool=gpu, zone=b",
            "NBC_K8S_IMAGE_PULL_SECRET": "reg1,reg2",
            "NBC_K8S_START_TIMEOUT": "90",
        }
    )
    assert settings.namespace == "team-a" and timeout == 90
    assert settings.node_selector == {"pool": "gpu", "zone": "b"}
    assert settings.image_pull_secrets == ("reg1", "reg2")
    with pytest.raises(ConfigError, match="key=value"):
        settings_from_env({"NBC_K8S_NODE_SELECTOR": "gpu"})
