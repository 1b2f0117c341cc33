"""Swarm's API shapes, read and written without an engine (the real swarm: test_contract.py
and tests/kernels/test_swarm_*.py)."""

from __future__ import annotations

from pathlib import Path

from nbcontainers.errors import ImageMissing, RuntimeFailure, Unsupported
from nbcontainers.runtimes.base import ContainerSpec, Mount
from nbcontainers.runtimes.swarm.wire import (
    gpu_nodes,
    service_spec,
    start_failure,
    state_from_service,
)


def test_service_spec_secrets_binds_tmpfs_limits_and_host_ports(tmp_path: Path) -> None:
    conn = tmp_path / "kernel.json"
    conn.write_text("{}")
    spec = ContainerSpec(
        image="img:1",
        command=("python", "-m", "ipykernel_launcher"),
        labels={"io.nbcontainers.kernel-id": "k"},
        env={"A": "b"},
        mounts=(Mount(str(conn), "/run/k.json"), Mount(str(tmp_path), str(tmp_path), False)),
        tmpfs={"/home/nbc": "rw,exec,mode=1777,size=4g"},
        user="1000:100",
        ports={5000: ("0.0.0.0", 5000)},
        mem_limit="1g",
        shm_size="2g",
        pids_limit=64,
    )
    body = service_spec(spec, "svc", [("sid", "sname", "/run/k.json")], 2, ["node.role==worker"])
    task = body["TaskTemplate"]
    container = task["ContainerSpec"]
    assert container["Args"] == ["python", "-m", "ipykernel_launcher"]
    assert container["User"] == "1000:100" and container["Init"] is True
    assert container["CapabilityDrop"] == ["ALL"]
    assert container["Secrets"] == [
        {
            "SecretID": "sid",
            "SecretName": "sname",
            "File": {"Name": "/run/k.json", "UID": "1000", "GID": "100", "Mode": 0o400},
        }
    ]
    # The file went as a secret; the folder stays a bind that every node must have.
    assert [m["Type"] for m in container["Mounts"]] == ["bind", "tmpfs", "tmpfs"]
    assert container["Mounts"][1]["TmpfsOptions"] == {"SizeBytes": 4 << 30, "Mode": 0o1777}
    assert container["Mounts"][2] == {
        "Type": "tmpfs", "Target": "/dev/shm", "TmpfsOptions": {"SizeBytes": 2 << 30}
    }  # fmt: skip
    assert task["Resources"]["Limits"] == {"MemoryBytes": 1 << 30, "Pids": 64}
    assert task["Resources"]["Reservations"]["GenericResources"] == [
        {"DiscreteResourceSpec": {"Kind": "NVIDIA-GPU", "Value": 2}}
    ]
    assert task["RestartPolicy"]["Condition"] == "none"
    assert task["Placement"]["Constraints"] == ["node.role==worker"]
    assert body["Mode"] == {"Replicated": {"Replicas": 1}}
    assert body["EndpointSpec"]["Ports"] == [
        {"Protocol": "tcp", "TargetPort": 5000, "PublishedPort": 5000, "PublishMode": "host"}
    ]
    assert body["Labels"] == {"io.nbcontainers.kernel-id": "k"}
    assert "io.nbcontainers.kernel-id" not in container["Labels"]  # Docker's gc leaves it


SERVICE = {"ID": "s1", "Spec": {"Name": "nbc-x", "Labels": {"a": "b"},
           "TaskTemplate": {"ContainerSpec": {"Image": "img:1"}}}}  # fmt: skip
NODE = {"ID": "n1", "Description": {"Hostname": "w1"},
        "Status": {"State": "ready", "Addr": "10.0.0.5"}}  # fmt: skip


def task(state: str, **status: object) -> dict[str, object]:
    return {"NodeID": "n1", "Status": {"State": state, **status}}


def test_state_of_a_running_exited_and_lost_task() -> None:
    ports = {"PortStatus": {"Ports": [{"TargetPort": 5000, "PublishedPort": 5000}]}}
    running = state_from_service(SERVICE, task("running", **ports), NODE)
    assert (running.status, running.address, running.node, running.ports) == (
        "running", "10.0.0.5", "w1", {5000: 5000}
    )  # fmt: skip
    exited = state_from_service(
        SERVICE,
        task("failed", Err="task: non-zero exit (3)", ContainerStatus={"ExitCode": 3}),
        NODE,
    )
    assert (exited.status, exited.exit_code, exited.running) == ("exited", 3, False)
    down = {**NODE, "Status": {"State": "down", "Addr": "10.0.0.5", "Message": "heartbeat failure"}}
    lost = state_from_service(SERVICE, task("running"), down)
    assert lost.status == "dead" and not lost.running
    assert "node w1 (10.0.0.5) is down: heartbeat failure" in lost.error
    pending = state_from_service(SERVICE, None, None)
    assert pending.status == "created" and pending.running
    # A manager may report 0.0.0.0 as its address; its manager address says where it is.
    manager = {**NODE, "Status": {"State": "ready", "Addr": "0.0.0.0"},
               "ManagerStatus": {"Addr": "172.17.0.1:2377"}}  # fmt: skip
    assert state_from_service(SERVICE, task("running"), manager).address == "172.17.0.1"


def test_start_failures_name_the_fix() -> None:
    no_node = task("pending", Err="no suitable node (scheduling constraints not satisfied)")
    failure = start_failure(no_node, "img:1", ["node.labels.gpu==true"], None)
    assert isinstance(failure, Unsupported) and "node.labels.gpu==true" in str(failure)
    gpu = task("pending", Err="no suitable node (insufficient resources on 2 nodes)")
    assert "NVIDIA-GPU" in str(start_failure(gpu, "img:1", [], 1))
    image = task("rejected", Err="No such image: img:1")
    missing = start_failure(image, "img:1", [], None, "w1")
    assert isinstance(missing, ImageMissing) and "docker save img:1" in str(missing)
    bind = task(
        "rejected",
        Err='invalid mount config for type "bind": bind source path does not exist: /data',
    )
    assert "same path on every node" in str(start_failure(bind, "img:1", [], None, "w1"))
    assert isinstance(
        start_failure(task("rejected", Err="boom"), "img:1", [], None), RuntimeFailure
    )
    started = task(
        "failed", Err="task: non-zero exit (3)", ContainerStatus={"ContainerID": "c", "ExitCode": 3}
    )
    assert start_failure(started, "img:1", [], None) is None  # it ran: an exit, not a failure
    assert start_failure(task("preparing"), "img:1", [], None) is None


def test_gpu_nodes_count_generic_resources() -> None:
    gpu = {"Description": {"Hostname": "g1", "Resources": {"GenericResources": [
        {"NamedResourceSpec": {"Kind": "NVIDIA-GPU", "Value": "GPU-1"}},
        {"NamedResourceSpec": {"Kind": "NVIDIA-GPU", "Value": "GPU-2"}},
    ]}}}  # fmt: skip
    assert gpu_nodes([gpu, NODE]) == {"g1": 2}
