"""What a Swarm service is made of and what the Engine API answers about one, as nbcontainers
values: the service spec for a :class:`ContainerSpec`, its state from the service, its newest
task and that task's node, and what to tell the user when a task can't start."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ...errors import ImageMissing, RuntimeFailure, Unsupported
from ..base import ContainerSpec, ContainerState

__all__ = [
    "GPU_KIND",
    "SECRET_MAX",
    "SERVICE_LABEL",
    "UNSTARTED",
    "advice",
    "container_labels",
    "create_arguments",
    "gpu_nodes",
    "secret_mounts",
    "service_spec",
    "start_failure",
    "state_from_service",
    "stop_arguments",
]

GPU_KIND = "NVIDIA-GPU"  # the generic resource nodes advertise (daemon.json node-generic-resources)
SERVICE_LABEL = "io.nbcontainers.swarm-service"  # on secrets and task containers: whose they are
SECRET_MAX = 500 * 1024  # Swarm's limit on one secret
# Task states before the container runs, and the ones after which it never will.
_WAITING = ("new", "allocated", "pending", "assigned", "accepted", "preparing", "ready", "starting")
UNSTARTED = ("rejected", "orphaned")
_UNITS = {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def _bytes(size: str | None) -> int | None:
    """'2g' -> bytes, as the Docker CLI reads sizes."""
    if not size:
        return None
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([bkmgt]?)b?", size.strip().lower())
    if not match:
        raise RuntimeFailure(f"Bad size {size!r}: use a number with k, m or g, e.g. '2g'.")
    return int(float(match.group(1)) * _UNITS[match.group(2) or "b"])


def secret_mounts(spec: ContainerSpec) -> tuple[list[Any], list[Any]]:
    """Split ``spec.mounts`` into (bind mounts, read-only files). The files (connection file,
    pip.conf, CA bundles) exist only on the server's host, so they travel as Swarm secrets:
    encrypted in the managers' log and given only to the node that runs the task, on a tmpfs.
    Every other bind source must exist on every node (a shared filesystem)."""
    binds, files = [], []
    for mount in spec.mounts:
        is_file = os.path.isfile(mount.source)
        if mount.read_only and is_file and os.path.getsize(mount.source) <= SECRET_MAX:
            files.append(mount)
        else:
            binds.append(mount)
    return binds, files


def container_labels(name: str) -> dict[str, str]:
    """Labels on the task's container. Not the kernel labels: those are on the service, and a
    plain Docker ``gc`` on a node must not remove a task container Swarm manages."""
    return {SERVICE_LABEL: name}


def service_spec(
    spec: ContainerSpec,
    name: str,
    secrets: Sequence[tuple[str, str, str]],
    gpus: int | None,
    placement: Sequence[str],
) -> dict[str, Any]:
    """The Engine API body that creates one service for ``spec``: one replica, never
    restarted, ports published in host mode on the node it lands on. ``secrets`` holds
    (secret id, secret name, target path) for each read-only file; ``gpus`` is the number of
    NVIDIA-GPU generic resources to reserve."""
    binds, _files = secret_mounts(spec)
    uid, _, gid = (spec.user or "0:0").partition(":")
    mounts: list[dict[str, Any]] = [
        {"Type": "bind", "Source": m.source, "Target": m.target, "ReadOnly": m.read_only}
        for m in binds
    ]
    for target, options in spec.tmpfs.items():
        size = re.search(r"size=([^,]+)", options)
        mode = re.search(r"mode=([0-7]+)", options)
        tmpfs: dict[str, Any] = {}
        if size:
            tmpfs["SizeBytes"] = _bytes(size.group(1))
        if mode:
            tmpfs["Mode"] = int(mode.group(1), 8)
        mounts.append({"Type": "tmpfs", "Target": target, "TmpfsOptions": tmpfs})
    if spec.shm_size:
        # Services take no shm size: a tmpfs of that size at /dev/shm is the same thing.
        mounts.append(
            {
                "Type": "tmpfs",
                "Target": "/dev/shm",
                "TmpfsOptions": {"SizeBytes": _bytes(spec.shm_size)},
            }
        )
    container: dict[str, Any] = {
        "Image": spec.image,
        "Labels": container_labels(name),
        "Env": [f"{k}={v}" for k, v in spec.env.items()],
        "Mounts": mounts,
        "Init": spec.init,
        "ReadOnly": spec.read_only,
        "CapabilityDrop": list(spec.cap_drop),
        "StopGracePeriod": 10 * 10**9,
        "Secrets": [
            {
                "SecretID": sid,
                "SecretName": sname,
                "File": {
                    "Name": target,
                    "UID": uid or "0",
                    "GID": gid or uid or "0",
                    "Mode": 0o400,
                },
            }
            for sid, sname, target in secrets
        ],
    }
    if spec.command:
        container["Args"] = list(spec.command)  # like `docker run IMAGE CMD`: the entrypoint stays
    if spec.working_dir:
        container["Dir"] = spec.working_dir
    if spec.user:
        container["User"] = spec.user
    limits: dict[str, Any] = {}
    if spec.mem_limit:
        limits["MemoryBytes"] = _bytes(spec.mem_limit)
    if spec.nano_cpus:
        limits["NanoCPUs"] = spec.nano_cpus
    if spec.pids_limit:
        limits["Pids"] = spec.pids_limit
    resources: dict[str, Any] = {"Limits": limits}
    if gpus:
        resources["Reservations"] = {
            "GenericResources": [{"DiscreteResourceSpec": {"Kind": GPU_KIND, "Value": gpus}}]
        }
    return {
        "Name": name,
        "Labels": dict(spec.labels),
        "TaskTemplate": {
            "ContainerSpec": container,
            "Resources": resources,
            "RestartPolicy": {"Condition": "none", "MaxAttempts": 0},
            "Placement": {"Constraints": list(placement)},
        },
        "Mode": {"Replicated": {"Replicas": 1}},
        "EndpointSpec": {
            "Mode": "dnsrr",  # no virtual IP: nothing reaches the kernel through the ingress mesh
            "Ports": [
                {"Protocol": "tcp", "TargetPort": c, "PublishedPort": p, "PublishMode": "host"}
                for c, (_ip, p) in spec.ports.items()
            ],
        },
    }


def create_arguments(body: Mapping[str, Any]) -> dict[str, Any]:
    """docker-py's public ``APIClient.create_service`` arguments for a :func:`service_spec`
    body (the SDK's private request helpers may go in any release)."""
    return {
        "task_template": body["TaskTemplate"],
        "name": body["Name"],
        "labels": body["Labels"],
        "mode": body["Mode"],
        "endpoint_spec": body["EndpointSpec"],
    }


def stop_arguments(service: Mapping[str, Any]) -> dict[str, Any]:
    """``APIClient.update_service`` arguments that scale ``service`` (as inspected) to no
    replicas: the API replaces the whole spec, so the rest of it is sent back unchanged."""
    spec = service["Spec"]
    return {
        "service": service["ID"],
        "version": service["Version"]["Index"],
        "task_template": spec.get("TaskTemplate"),
        "name": spec.get("Name"),
        "labels": spec.get("Labels"),
        "mode": {"Replicated": {"Replicas": 0}},
        "update_config": spec.get("UpdateConfig"),
        "rollback_config": spec.get("RollbackConfig"),
        "endpoint_spec": spec.get("EndpointSpec"),
    }


def advice(topic: str, subject: str) -> str:
    """What to run on a manager to look into service ``subject`` ("locate") or node
    ``subject`` ("node"); see ``ContainerRuntime.advice``."""
    if topic == "locate":
        return f"`docker service ps --no-trunc {subject}` on a manager"
    if topic == "node":
        return f"`docker node inspect {subject}` on a manager (its Status.Addr)"
    return ""


def gpu_nodes(nodes: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Hostname -> NVIDIA-GPU generic resources each ready node advertises."""
    found = {}
    for node in nodes:
        resources = ((node.get("Description") or {}).get("Resources") or {}).get(
            "GenericResources"
        ) or []
        count = 0
        for resource in resources:
            named = resource.get("NamedResourceSpec") or {}
            discrete = resource.get("DiscreteResourceSpec") or {}
            if named.get("Kind") == GPU_KIND:
                count += 1
            if discrete.get("Kind") == GPU_KIND:
                count += int(discrete.get("Value") or 0)
        if count:
            found[_hostname(node)] = count
    return found


def _hostname(node: Mapping[str, Any]) -> str:
    return str((node.get("Description") or {}).get("Hostname") or node.get("ID", ""))


def node_address(node: Mapping[str, Any]) -> str:
    """Where this server reaches ports a node publishes: its address in the swarm (a manager
    may report 0.0.0.0 there; its manager address then says)."""
    addr = str((node.get("Status") or {}).get("Addr") or "")
    if addr in ("", "0.0.0.0"):
        addr = str((node.get("ManagerStatus") or {}).get("Addr") or "").rpartition(":")[0]
    return addr


def state_from_service(
    service: Mapping[str, Any], task: Mapping[str, Any] | None, node: Mapping[str, Any] | None
) -> ContainerState:
    """The service as one container: its newest task's state, exit code and ports, the
    address of the node it runs on; "dead" with the reason when that node is down."""
    spec = service.get("Spec") or {}
    container = ((spec.get("TaskTemplate") or {}).get("ContainerSpec")) or {}
    status, exit_code, error, started, ports = "created", None, "", "", {}
    address = hostname = ""
    if task is not None:
        st = task.get("Status") or {}
        state = str(st.get("State", "new"))
        error = str(st.get("Err") or "")
        cstatus = st.get("ContainerStatus") or {}
        ports = {
            int(p["TargetPort"]): int(p["PublishedPort"])
            for p in (st.get("PortStatus") or {}).get("Ports") or ()
            if p.get("PublishedPort")
        }
        if state == "running":
            status, started = "running", str(st.get("Timestamp", ""))
        elif state in _WAITING:
            status = "created"
        else:  # complete, failed, shutdown, rejected, orphaned, remove
            status = "exited"
            if "ExitCode" in cstatus and state not in UNSTARTED:
                exit_code = int(cstatus["ExitCode"])
            else:
                exit_code = -1
        if node is not None:
            hostname, address = _hostname(node), node_address(node)
            node_state = str((node.get("Status") or {}).get("State", "unknown"))
            if status in ("running", "created") and node_state != "ready":
                status = "dead"
                error = (
                    f"node {hostname} ({address}) is {node_state}"
                    + (
                        f": {(node.get('Status') or {}).get('Message')}"
                        if (node.get("Status") or {}).get("Message")
                        else ""
                    )
                    + " - the kernel on it is lost"
                )
    return ContainerState(
        id=str(service.get("ID", "")),
        name=str(spec.get("Name", "")),
        image=str(container.get("Image", "")),
        status=status,
        exit_code=exit_code,
        oom_killed=False,  # a task reports no OOM flag; crash.py reads 137 under a limit as OOM
        labels=dict(spec.get("Labels") or {}),
        started_at=started,
        error=error,
        address=address,
        ports=ports,
        node=hostname,
    )


def start_failure(
    task: Mapping[str, Any],
    image: str,
    placement: Sequence[str],
    gpus: int | None,
    node: str = "",
) -> Exception | None:
    """The error to raise at once for a task that will not start, or None while it may."""
    st = task.get("Status") or {}
    state = str(st.get("State", ""))
    err = str(st.get("Err") or st.get("Message") or "")
    if state == "pending" and ("no suitable node" in err or "insufficient resources" in err):
        if gpus and "insufficient resources" in err:
            return Unsupported(
                f"No node of this swarm has {gpus} free {GPU_KIND} generic resource(s) ({err}). "
                "Free a GPU, ask for fewer, or advertise GPUs on a node (README: Docker Swarm)."
            )
        where = ", ".join(placement) or "(no constraints)"
        return Unsupported(
            f"No node of this swarm can run the kernel: {err}. Its placement is {where}. "
            "Check the nodes (`docker node ls`, `docker node inspect NODE`), label one "
            "(`docker node update --label-add KEY=VALUE NODE`), or change the 'placement' setting."
        )
    if state not in ("rejected", "failed"):
        return None
    if "No such image" in err or ("not found" in err and image in err):
        return ImageMissing(
            f"Node {node or str(task.get('NodeID', '?'))[:12]} has no image {image} ({err}). "
            "Swarm nodes here have no registry: load it on every node (`docker save "
            f"{image} | ssh NODE docker load`), or push it to a registry the nodes can pull "
            "from and use that ref."
        )
    if "bind source path does not exist" in err:
        path = err.rsplit(":", 1)[-1].strip()
        return RuntimeFailure(
            f"The node the kernel landed on ({node or '?'}) has no {path} ({err}). Bind "
            "mounts (the workspace, extra_mounts) must exist at the same path on every node: "
            "put them on a shared filesystem, constrain the kernel to nodes that have them, "
            "or set mount_workspace=False."
        )
    if state == "rejected" or not (st.get("ContainerStatus") or {}).get("ContainerID"):
        return RuntimeFailure(f"Swarm could not start the task for {image}: {err or state}.")
    return None
