"""What a kernel pod's status means: a ContainerState in the terms Docker reports (status,
exit code, OOM), or the error that says why the pod can't start and what fixes it.

Pure functions over the official client's models; nothing here talks to a cluster.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ...errors import GPUUnavailable, ImageMissing, NbcontainersError, RuntimeFailure
from ..base import ContainerState
from .names import CONTAINER, GPU_RESOURCE, LABELS_ANNOTATION, ROLE_RULES

__all__ = ["missing_verbs", "start_problem", "state_from"]

_PULL_FAILURES = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull")
_CONFIG_FAILURES = ("CreateContainerConfigError", "CreateContainerError", "RunContainerError")


def _kernel_status(pod: Any) -> Any:
    for status in (pod.status and pod.status.container_statuses) or ():
        if status.name == CONTAINER:
            return status
    return None


def _stamp(value: Any) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value or "")


def state_from(pod: Any) -> ContainerState:
    """What the pod's status says, in the terms Docker reports: status, exit code, OOM."""
    meta, status = pod.metadata, pod.status
    phase = (status and status.phase) or "Pending"
    kernel = _kernel_status(pod)
    running = kernel and kernel.state and kernel.state.running
    terminated = kernel and kernel.state and kernel.state.terminated
    waiting = kernel and kernel.state and kernel.state.waiting
    exit_code, oom, error, started = None, False, "", ""
    disrupted = next(
        (
            c.message or c.reason or "disrupted"
            for c in (status and status.conditions) or ()
            if c.type == "DisruptionTarget" and c.status == "True"
        ),
        "",
    )
    if terminated:
        exit_code, oom = terminated.exit_code, terminated.reason == "OOMKilled"
        error = terminated.message or (
            "" if terminated.reason == "Completed" else terminated.reason or ""
        )
        started = _stamp(terminated.started_at)
    elif running:
        started = _stamp(running.started_at)
    elif waiting:
        error = ": ".join(part for part in (waiting.reason, waiting.message) if part)
    if phase in ("Succeeded", "Failed"):
        state = "exited"
        if not error and status:  # evicted, or the node gone: the pod's own reason
            error = ": ".join(part for part in (status.reason, status.message) if part)
        if exit_code is None:
            exit_code = 137 if (status and status.reason == "Evicted") else 1
    elif phase == "Unknown" or (disrupted and not terminated):
        # The node went away: phase Unknown on old clusters, a DisruptionTarget condition
        # (the taint manager evicting the pod) from Kubernetes 1.26 on.
        state = "dead"
        detail = disrupted or (status and status.message) or "its node stopped answering"
        error = f"the kernel pod's node is gone ({detail})"
    elif terminated:
        state = "exited"
    elif running:
        state = "running"
    else:
        state = "created"
    if meta.deletion_timestamp and state not in ("exited", "dead"):
        state = "removing"
    try:
        labels = json.loads((meta.annotations or {}).get(LABELS_ANNOTATION, "{}"))
    except ValueError:
        labels = {}
    container = pod.spec.containers[0] if pod.spec and pod.spec.containers else None
    ports = {p.container_port: p.container_port for p in (container and container.ports) or ()}
    return ContainerState(
        id=meta.name,
        name=meta.name,
        image=container.image if container else "",
        status=state,
        exit_code=exit_code,
        oom_killed=oom,
        labels=labels,
        started_at=started,
        error=error,
        address=(status and status.pod_ip) or "",
        ports=ports,
    )


def _unschedulable_fix(message: str) -> tuple[type[NbcontainersError], str]:
    if GPU_RESOURCE in message:
        return GPUUnavailable, (
            "No node has a free NVIDIA GPU: check the GPU nodes run the NVIDIA device plugin "
            "(or the GPU operator) and advertise nvidia.com/gpu, lower the 'gpus' setting, or "
            "pick the image's CPU variant."
        )
    if "Insufficient memory" in message or "Insufficient cpu" in message:
        return RuntimeFailure, "Lower c.ContainerProvisioner.mem_limit / cpus, or add nodes."
    if "affinity" in message or "selector" in message:
        return RuntimeFailure, (
            "Check NBC_K8S_NODE_SELECTOR and the 'placement' setting against your nodes' labels."
        )
    if "taint" in message:
        return RuntimeFailure, "The nodes are tainted: use nodes without the taint."
    return RuntimeFailure, "Check the cluster has a node for it (`kubectl describe pod`)."


def start_problem(pod: Any, events: Sequence[Any] = ()) -> NbcontainersError | None:
    """Why the pod can't start, as the error to raise, or None while it may still start.
    ``events`` are the pod's events: a cluster autoscaler adding a node means "wait"."""
    name, kernel = pod.metadata.name, _kernel_status(pod)
    waiting = kernel and kernel.state and kernel.state.waiting
    if waiting and waiting.reason in _PULL_FAILURES:
        image = pod.spec.containers[0].image
        return ImageMissing(
            f"The cluster can't pull image {image} for kernel pod {name} ({waiting.reason}: "
            f"{waiting.message or 'no details'}). Push it to a registry the nodes can reach "
            "(`docker push`) and name that ref in the catalog (~/.config/nbcontainers/"
            "images.json), or set NBC_K8S_IMAGE_PULL_SECRET if the registry needs a login."
        )
    if waiting and waiting.reason in _CONFIG_FAILURES:
        hint = (
            " The image runs as root: set c.ContainerProvisioner.user to a non-root uid:gid."
            if any(word in (waiting.message or "") for word in ("runAsNonRoot", "non-root"))
            else ""
        )
        return RuntimeFailure(
            f"Kernel pod {name} can't start its container ({waiting.reason}: "
            f"{waiting.message or 'no details'}).{hint}"
        )
    for condition in (pod.status and pod.status.conditions) or ():
        if condition.type == "PodScheduled" and condition.reason == "Unschedulable":
            if any(getattr(e, "reason", "") == "TriggeredScaleUp" for e in events):
                return None  # a node is on its way
            message = condition.message or "no node fits"
            kind, fix = _unschedulable_fix(message)
            return kind(f"No node can run kernel pod {name}: {message} {fix}")
    return None


def missing_verbs(resource_rules: Sequence[Any], pod_policies: bool = True) -> list[str]:
    """The Role's grants ("verb resource") that a SelfSubjectRulesReview's rules lack.
    ``get`` on pods/exec counts only before Kubernetes 1.31, so it is not asked for, nor
    network policies where the runtime makes none (``pod_policies`` False)."""

    def has(group: str, resource: str, verb: str) -> bool:
        return any(
            (group in rule.api_groups or "*" in rule.api_groups)
            and (resource in rule.resources or "*" in rule.resources)
            and (verb in rule.verbs or "*" in rule.verbs)
            and not rule.resource_names
            for rule in resource_rules
        )

    return [
        f"{verb} {rule.resource}"
        for rule in ROLE_RULES
        for verb in rule.verbs
        if (rule.resource, verb) != ("pods/exec", "get")
        and (pod_policies or not rule.pod_policy)
        and not has(rule.api_group, rule.resource, verb)
    ]
