"""The names the Kubernetes runtime and the manifests it needs agree on: kernel pod labels,
the kernel namespaces' labels, the Role and its rules. No client import here, so
``nbcontainers k8s manifests`` renders them on a machine without the ``kubernetes`` package."""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "COMPONENT",
    "CONTAINER",
    "GPU_RESOURCE",
    "KERNEL_COMPONENT",
    "KERNEL_NAMESPACE_LABEL",
    "LABELS_ANNOTATION",
    "MANAGED_BY",
    "POD_LABEL",
    "PSS_LABEL",
    "ROLE",
    "ROLE_RULES",
    "SERVICE_ACCOUNT",
    "TENANT_LABEL",
    "Rule",
    "valid_label",
]

COMPONENT = "app.kubernetes.io/component"
KERNEL_COMPONENT = "nbc-kernel"  # COMPONENT's value on every kernel pod, secret and policy
MANAGED_BY = "app.kubernetes.io/managed-by"
# Every nbcontainers label of a kernel, exactly, as JSON: label values can't hold a path.
LABELS_ANNOTATION = "nbcontainers.io/labels"
POD_LABEL = "nbcontainers.io/pod"  # the pod's own name: what its NetworkPolicy selects
CONTAINER = "kernel"  # the one container of a kernel pod
GPU_RESOURCE = "nvidia.com/gpu"  # the NVIDIA device plugin's extended resource
ROLE = "nbc-kernels"
SERVICE_ACCOUNT = "nbc-notebook"  # the notebook pods' accounts: this, "-", the user or team
# On every kernel namespace: what the notebook pods' egress policy selects.
KERNEL_NAMESPACE_LABEL = "nbcontainers.io/kernels"
PSS_LABEL = "pod-security.kubernetes.io/"  # + enforce, audit, warn (and -version)
# On each notebook pod (set by the hub's hook, which users can't change): the kernel
# namespace it may reach, which that namespace's ingress policy selects.
TENANT_LABEL = "nbcontainers.io/kernel-namespace"


@dataclass(frozen=True)
class Rule:
    """One rule of the Role, and which runtime call needs it (for the error that names it)."""

    api_group: str
    resource: str
    verbs: tuple[str, ...]
    why: str
    # Needed only where each kernel gets its own NetworkPolicy (NBC_K8S_NETWORK_POLICY=pod);
    # a kernel namespace's policies are the admin's, and its users may not make their own
    # (an egress policy of a user's would open the cluster's network to their kernels).
    pod_policy: bool = False


# Only what KubernetesRuntime calls, and only in the kernel namespace of the notebook's user
# (or team): the RoleBinding lives there, so none of it reaches the hub's namespace. Secrets
# and network policies are created, never read or deleted: each carries an ownerReference to
# its kernel pod, and the cluster's garbage collector removes it with the pod. pods/exec is
# there because `signal` (SIGINT, the interrupt fallback) runs `kill` in the kernel's pod.
ROLE_RULES = (
    Rule(
        "", "pods", ("create", "get", "list", "watch", "delete"), "run, state, wait, list, remove"
    ),
    Rule("", "pods/log", ("get",), "logs and crash reports"),
    # Websocket exec is authorised as `create` from Kubernetes 1.31 on, as `get` before.
    Rule("", "pods/exec", ("create", "get"), "signal (SIGINT, the interrupt fallback) and exec"),
    Rule("", "events", ("list", "watch"), "why a pod does not start (scheduling, mounts)"),
    Rule("", "secrets", ("create",), "each kernel's connection file"),
    Rule(
        "networking.k8s.io",
        "networkpolicies",
        ("create",),
        "each kernel's ingress policy",
        pod_policy=True,
    ),
)


_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


def valid_label(key: str, value: str) -> bool:
    """Whether Kubernetes takes ``key=value`` as a label (an optional DNS prefix and ``/``,
    a name and a value of at most 63 letters, digits, ``-``, ``_`` or ``.``)."""
    prefix, _, name = key.rpartition("/")
    return (
        len(name) <= 63
        and bool(_LABEL_NAME.match(name))
        and len(prefix) <= 253
        and len(value) <= 63
        and bool(_LABEL_VALUE.match(value))
    )
