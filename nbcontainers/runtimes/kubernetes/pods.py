"""Kubernetes objects for one kernel: a ContainerSpec becomes a locked-down pod, plus a
Secret for its small files and a NetworkPolicy for its ports.

Pure functions over the official client's models (``kubernetes.client``), imported when
called, so that the runtime and its tests share one set of shapes and nothing here talks to
a cluster.
"""

from __future__ import annotations

import json
import os
import re
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ...errors import ConfigError, RuntimeFailure, Unsupported
from ..base import ContainerSpec
from .names import (
    COMPONENT,
    CONTAINER,
    GPU_RESOURCE,
    KERNEL_COMPONENT,
    LABELS_ANNOTATION,
    MANAGED_BY,
    POD_LABEL,
    valid_label,
)
from .template import apply_template

__all__ = [
    "MAX_FILES_BYTES",
    "OWNER_KEYS",
    "PodSettings",
    "files_secret",
    "kernel_policy",
    "label_selector",
    "owner_selector",
    "pod_for",
    "pod_name",
    "quantity",
    "signal_command",
]

MAX_FILES_BYTES = 900 * 1024  # a Secret holds at most 1 MiB
# The notebook pod's labels that name its user under Zero to JupyterHub.
OWNER_KEYS = ("component", "hub.jupyter.org/username", "hub.jupyter.org/servername")


@dataclass(frozen=True)
class PodSettings:
    """The cluster-side choices a ContainerSpec does not carry."""

    namespace: str = "default"
    node_selector: Mapping[str, str] = field(default_factory=dict)
    image_pull_secrets: tuple[str, ...] = ()
    image_pull_policy: str = "IfNotPresent"
    owner_selector: Mapping[str, str] = field(default_factory=dict)  # the notebook pod
    template: Mapping[str, Any] = field(default_factory=dict)  # a Pod manifest to start from
    owner_namespace: str = ""  # the notebook pod's, where its kernels run in another
    # A NetworkPolicy per kernel pod, or none: the kernel namespace's own policy admits its
    # tenant's notebook pods (NBC_K8S_NETWORK_POLICY=namespace).
    pod_policies: bool = True


def pod_name(name: str) -> str:
    """A container name as a pod name (a DNS label): lower case, ``-`` for anything else."""
    cleaned = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:63].rstrip("-")
    if not cleaned:
        raise RuntimeFailure(f"{name!r} can't be a pod name: use letters, digits and '-'.")
    return cleaned


def label_selector(labels: Mapping[str, str | None]) -> str:
    """The server-side selector for ``labels`` (what a label can hold; the rest is matched on
    the annotation), always narrowed to kernel pods."""
    terms = [f"{COMPONENT}={KERNEL_COMPONENT}"]
    for key, value in labels.items():
        if value is None and valid_label(key, ""):
            terms.append(key)
        elif value is not None and valid_label(key, value):
            terms.append(f"{key}={value}")
    return ",".join(terms)


def quantity(size: str) -> str:
    """Docker's size strings ("512m", "2g", "1024") as Kubernetes quantities ("512Mi")."""
    match = re.fullmatch(r"(\d+)([bkmg]?)b?", size.strip().lower())
    if not match:
        raise Unsupported(f"Invalid size {size!r}: use a number with b, k, m or g.")
    suffix = {"": "", "b": "", "k": "Ki", "m": "Mi", "g": "Gi"}[match.group(2)]
    return match.group(1) + suffix


def _user(spec: ContainerSpec) -> tuple[int | None, int | None]:
    if not spec.user:
        return None, None
    uid_text, _, gid_text = spec.user.partition(":")
    try:
        uid, gid = int(uid_text), int(gid_text) if gid_text else None
    except ValueError:
        raise Unsupported(
            f"user={spec.user!r}: a kernel pod needs a numeric uid[:gid] (runAsUser)."
        ) from None
    if uid == 0:
        raise Unsupported(
            "Kernel pods never run as root (runAsNonRoot): set c.ContainerProvisioner.user to "
            "a non-root 'uid:gid', or run the notebook server as a non-root user."
        )
    return uid, gid


def _check_network(spec: ContainerSpec) -> None:
    mode = spec.network_mode or "bridge"
    if mode == "bridge":
        return
    if mode.startswith("container:"):
        raise Unsupported(
            "A kernel pod can't join the notebook server's network namespace: it may run on "
            "another node. Set c.ContainerProvisioner.transport = 'tcp' (with CurveZMQ)."
        )
    raise Unsupported(
        f"network_mode={mode!r} has no kernel-pod equivalent (the pod network only; no "
        "hostNetwork). Leave the 'network' setting at its default for Kubernetes."
    )


def _gpu_limits(spec: ContainerSpec) -> dict[str, str]:
    gpus = spec.gpus
    if gpus is None:
        return {}
    if gpus.device_ids:
        raise Unsupported(
            f"gpus={list(gpus.device_ids)!r}: Kubernetes hands out GPUs by count, not by id. "
            "Set gpus to a number, e.g. 1."
        )
    if not gpus.count or gpus.count < 0:
        raise Unsupported(
            "gpus='all' has no meaning on a cluster (which node's all?): set gpus to a count, "
            "e.g. c.ContainerProvisioner.gpus = '1'."
        )
    return {GPU_RESOURCE: str(gpus.count)}


def _split_mounts(spec: ContainerSpec) -> tuple[dict[str, bytes], dict[str, str]]:
    """The spec's bind mounts as pod content: each small read-only file travels in the
    kernel's Secret (key -> bytes, key -> target). A folder can't follow a pod to another
    node, so one is refused with the setting that avoids it."""
    contents: dict[str, bytes] = {}
    targets: dict[str, str] = {}
    for i, mount in enumerate(spec.mounts):
        if os.path.isfile(mount.source) and mount.read_only:
            with open(mount.source, "rb") as f:
                contents[f"file-{i}"] = f.read()
            targets[f"file-{i}"] = mount.target
            continue
        if not mount.read_only and "socket" in mount.source:
            hint = "set c.ContainerProvisioner.transport = 'tcp'"
        elif mount.read_only:
            hint = (
                "it comes from pip_settings (a local find-links folder) or extra_mounts: set "
                "c.ContainerProvisioner.pip_settings = False, or drop it from extra_mounts"
            )
        else:
            hint = (
                "set c.ContainerProvisioner.mount_workspace = False (the kernel then starts in "
                "its own HOME), or drop it from extra_mounts, and keep data where a kernel on "
                "any node can fetch it, such as object storage"
            )
        raise Unsupported(
            f"A kernel pod can't bind-mount {mount.source} from the notebook server: it may run "
            f"on another node. {hint[0].upper()}{hint[1:]}."
        )
    if sum(len(v) for v in contents.values()) > MAX_FILES_BYTES:
        raise Unsupported(
            "The kernel's files (connection file, pip.conf, CA bundles) exceed what one "
            "Kubernetes Secret holds (1 MiB): set c.ContainerProvisioner.pip_settings = False."
        )
    return contents, targets


def pod_for(spec: ContainerSpec, name: str, settings: PodSettings) -> tuple[Any, dict[str, bytes]]:
    """The kernel pod for ``spec`` and the file contents its Secret (``name``-files) must
    hold; raise ``Unsupported`` for what a pod can't honour."""
    from kubernetes import client as k

    _check_network(spec)
    uid, gid = _user(spec)
    contents, targets = _split_mounts(spec)
    limits = _gpu_limits(spec)
    if spec.mem_limit:
        limits["memory"] = quantity(spec.mem_limit)
    if spec.nano_cpus:
        limits["cpu"] = f"{max(1, spec.nano_cpus // 1_000_000)}m"
    volumes = [
        # /dev/shm in memory: the runtime's 64 MB default breaks DataLoader workers.
        k.V1Volume(
            name="dshm",
            empty_dir=k.V1EmptyDirVolumeSource(
                medium="Memory", size_limit=quantity(spec.shm_size or "64m")
            ),
        )
    ]
    mounts = [k.V1VolumeMount(name="dshm", mount_path="/dev/shm")]
    for i, (target, options) in enumerate(sorted(spec.tmpfs.items())):
        size = re.search(r"(?:^|,)size=([^,]+)", options)
        volumes.append(
            k.V1Volume(
                name=f"tmp-{i}",
                empty_dir=k.V1EmptyDirVolumeSource(
                    medium="Memory", size_limit=quantity(size.group(1)) if size else None
                ),
            )
        )
        mounts.append(k.V1VolumeMount(name=f"tmp-{i}", mount_path=target))
    if contents:
        volumes.append(
            k.V1Volume(
                name="files",
                secret=k.V1SecretVolumeSource(
                    # Readable by the kernel's group (fsGroup), or by all of the pod's one
                    # container when the spec names no group.
                    secret_name=f"{name}-files",
                    default_mode=0o440 if gid is not None else 0o444,
                ),
            )
        )
        mounts.extend(
            k.V1VolumeMount(name="files", mount_path=target, sub_path=key, read_only=True)
            for key, target in sorted(targets.items())
        )
    labels = {key: value for key, value in spec.labels.items() if valid_label(key, value)}
    labels.update({COMPONENT: KERNEL_COMPONENT, MANAGED_BY: "nbcontainers", POD_LABEL: name})
    container = k.V1Container(
        name=CONTAINER,
        image=spec.image,
        image_pull_policy=settings.image_pull_policy,
        args=list(spec.command) or None,  # like Docker's CMD: the image's entrypoint stays
        env=[k.V1EnvVar(name=key, value=value) for key, value in sorted(spec.env.items())],
        working_dir=spec.working_dir,
        ports=[k.V1ContainerPort(container_port=p, protocol="TCP") for p in sorted(spec.ports)],
        resources=k.V1ResourceRequirements(limits=limits or None),
        volume_mounts=mounts,
        security_context=k.V1SecurityContext(
            allow_privilege_escalation=False,
            privileged=False,
            capabilities=k.V1Capabilities(drop=["ALL"]),
            read_only_root_filesystem=spec.read_only,
            run_as_non_root=True,
            run_as_user=uid,
            run_as_group=gid,
            seccomp_profile=k.V1SeccompProfile(type="RuntimeDefault"),
        ),
    )
    # GPU node pools are commonly tainted so that only GPU pods land there.
    tolerations = (
        [k.V1Toleration(key=GPU_RESOURCE, operator="Exists", effect="NoSchedule")]
        if GPU_RESOURCE in limits
        else None
    )
    pod = k.V1Pod(
        api_version="v1",
        kind="Pod",
        metadata=k.V1ObjectMeta(
            name=name,
            namespace=settings.namespace,
            labels=labels,
            annotations={LABELS_ANNOTATION: json.dumps(dict(spec.labels), sort_keys=True)},
        ),
        spec=k.V1PodSpec(
            containers=[container],
            restart_policy="Never",  # a crash must surface its exit code, not restart
            automount_service_account_token=False,
            enable_service_links=False,
            host_network=False,
            host_pid=False,
            host_ipc=False,
            node_selector=dict(settings.node_selector) or None,
            tolerations=tolerations,
            image_pull_secrets=[
                k.V1LocalObjectReference(name=s) for s in settings.image_pull_secrets
            ]
            or None,
            security_context=k.V1PodSecurityContext(
                run_as_non_root=True,
                run_as_user=uid,
                run_as_group=gid,
                fs_group=gid,
                seccomp_profile=k.V1SeccompProfile(type="RuntimeDefault"),
            ),
            volumes=volumes,
        ),
    )
    if settings.template:
        api: Any = k.ApiClient()
        laid = apply_template(api.sanitize_for_serialization(pod), settings.template)
        pod = api.deserialize(json.dumps(laid), "V1Pod", None)
    return pod, contents


def _owned_by(pod: Any) -> list[Any]:
    from kubernetes import client as k

    return [
        k.V1OwnerReference(
            api_version="v1",
            kind="Pod",
            name=pod.metadata.name,
            uid=pod.metadata.uid,
            block_owner_deletion=False,
        )
    ]


def _meta(pod: Any, name: str) -> Any:
    from kubernetes import client as k

    return k.V1ObjectMeta(
        name=name,
        namespace=pod.metadata.namespace,
        labels={COMPONENT: KERNEL_COMPONENT, MANAGED_BY: "nbcontainers"},
        owner_references=_owned_by(pod),
    )


def files_secret(pod: Any, contents: Mapping[str, bytes]) -> Any:
    """The Secret with the kernel's files, owned by (and deleted with) its pod."""
    import base64

    from kubernetes import client as k

    return k.V1Secret(
        api_version="v1",
        kind="Secret",
        metadata=_meta(pod, f"{pod.metadata.name}-files"),
        type="Opaque",
        data={key: base64.b64encode(value).decode() for key, value in contents.items()},
    )


def kernel_policy(
    pod: Any, ports: Sequence[int], owner: Mapping[str, str], owner_namespace: str = ""
) -> Any:
    """A NetworkPolicy that lets only the owning notebook pod (in ``owner_namespace`` when
    that is not the kernel's) reach the kernel's ports."""
    from kubernetes import client as k

    selector = {COMPONENT: KERNEL_COMPONENT, POD_LABEL: pod.metadata.name}
    peer = k.V1NetworkPolicyPeer(pod_selector=k.V1LabelSelector(match_labels=dict(owner)))
    if owner_namespace and owner_namespace != pod.metadata.namespace:
        named = {"kubernetes.io/metadata.name": owner_namespace}
        peer.namespace_selector = k.V1LabelSelector(match_labels=named)
    rule = k.V1NetworkPolicyIngressRule(
        _from=[peer],
        ports=[k.V1NetworkPolicyPort(port=p, protocol="TCP") for p in sorted(ports)],
    )
    return k.V1NetworkPolicy(
        api_version="networking.k8s.io/v1",
        kind="NetworkPolicy",
        metadata=_meta(pod, pod.metadata.name),
        spec=k.V1NetworkPolicySpec(
            pod_selector=k.V1LabelSelector(match_labels=selector),
            policy_types=["Ingress"],
            # No ports, no rule: a rule without ports would open every port.
            ingress=[rule] if ports else [],
        ),
    )


def owner_selector(own_labels: Mapping[str, str]) -> dict[str, str]:
    """What selects the notebook server's pod, from that pod's labels: its Zero to
    JupyterHub user and server labels where it has them, else all of them."""
    picked = {key: own_labels[key] for key in OWNER_KEYS if key in own_labels}
    if not (picked or own_labels):
        raise ConfigError(
            "The Kubernetes runtime lets only the notebook server's pod reach a kernel, but "
            "this server runs in no labelled pod. Set NBC_K8S_OWNER_SELECTOR=key=value,... "
            "to the labels of the pod that connects to the kernels."
        )
    return picked or dict(own_labels)


def signal_command(signum: int) -> list[str]:
    """What ``exec`` runs in the pod to signal the kernel (process 1: a pod has no init):
    the shell's own ``kill``, since a minimal image may have no kill program."""
    return ["sh", "-c", f"kill -s {signal.Signals(signum).name.removeprefix('SIG')} 1"]
