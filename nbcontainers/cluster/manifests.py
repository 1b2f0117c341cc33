"""The cluster objects the Kubernetes runtime needs: a kernel namespace per user or per team
(Pod Security ``restricted`` enforced, a ResourceQuota and a LimitRange), in it the Role with
only the verbs the runtime calls (``runtimes.k8s_names.ROLE_RULES``) bound to that tenant's
notebook ServiceAccount, and NetworkPolicies that let only that tenant's notebook pods reach
its kernel pods and keep kernels' connections to DNS and public addresses; users may make
no NetworkPolicy of their own there. In the hub's namespace: the ServiceAccounts only,
with no rights there at all. The Zero to JupyterHub values live in ``values.py``.

Plain dicts, in the API's own field names; ``kubectl apply -f`` and ``helm upgrade -f`` take
them as YAML. Nothing here talks to a cluster or imports its client.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from ..runtimes.kubernetes.names import (
    COMPONENT,
    GPU_RESOURCE,
    KERNEL_COMPONENT,
    KERNEL_NAMESPACE_LABEL,
    MANAGED_BY,
    PSS_LABEL,
    ROLE,
    ROLE_RULES,
    SERVICE_ACCOUNT,
    TENANT_LABEL,
)
from .tenants import Tenant, tenants

__all__ = [
    "API_SERVER_PORTS",
    "PRIVATE_RANGES",
    "PROVISIONER_CONFIG",
    "PSS_VERSION",
    "SERVER_CONFIG_PATH",
    "ManifestOptions",
    "Quota",
    "cluster_objects",
    "z2jh_values",
]

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_QUANTITY = re.compile(r"^\d+(\.\d+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?$")
# Where kernel pods may not connect: private networks (the cluster's own pods and nodes) and
# link-local addresses, the cloud metadata server among them.
PRIVATE_RANGES = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16")
API_SERVER_PORTS = (443, 6443)  # the API server's Service port, and its usual backend port
# Where Jupyter Server reads extra config in a Zero to JupyterHub single-user image.
SERVER_CONFIG_PATH = "/etc/jupyter/jupyter_server_config.d/nbcontainers-kubernetes.json"
# The provisioner settings for kernels in pods: TCP with CurveZMQ (another node), and no
# folder from the server's pod, which a pod on another node can't mount.
PROVISIONER_CONFIG: Mapping[str, Any] = {
    "runtime_name": "kubernetes",
    "transport": "tcp",
    "mount_workspace": False,
}
# The Pod Security Standards version enforced: pinned, so a cluster upgrade never tightens
# (or loosens) what is admitted unseen; audit and warn follow the latest, so an admin hears
# what a newer version would refuse before pinning it.
PSS_VERSION = "v1.31"


@dataclass(frozen=True)
class Quota:
    """What one kernel namespace may hold (ResourceQuota) and what one kernel may ask for
    (LimitRange): totals of requests and limits, kernel pods, GPUs, and a kernel's default
    and largest CPU and memory."""

    pods: int = 10
    cpu: str = "16"
    memory: str = "64Gi"
    gpus: int = 0
    max_cpu: str = "8"
    max_memory: str = "32Gi"
    default_cpu: str = "1"
    default_memory: str = "2Gi"

    def __post_init__(self) -> None:
        for what, value in (
            ("cpu", self.cpu),
            ("memory", self.memory),
            ("max-cpu", self.max_cpu),
            ("max-memory", self.max_memory),
            ("default-cpu", self.default_cpu),
            ("default-memory", self.default_memory),
        ):
            if not _QUANTITY.match(value):
                raise ConfigError(
                    f"--quota-{what} {value!r} is not a Kubernetes quantity: e.g. 4, 500m, 16Gi."
                )
        if self.pods < 1 or self.gpus < 0:
            raise ConfigError("--quota-pods must be 1 or more and --quota-gpus 0 or more.")


@dataclass(frozen=True)
class ManifestOptions:
    """What ``nbcontainers k8s manifests`` asks: the hub's namespace (the notebook pods and
    their ServiceAccounts), a kernel namespace per user or per team (``per``, ``users``,
    ``teams``; named ``namespace_prefix`` + the name), the accounts' name prefix, the API
    server's address as a CIDR ("" allows its ports to any address), the quota and the
    pinned Pod Security version."""

    namespace: str = "jupyterhub"
    service_account: str = SERVICE_ACCOUNT
    api_server_cidr: str = ""
    per: str = "user"
    users: tuple[str, ...] = ()
    teams: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    namespace_prefix: str = "nbc-"
    quota: Quota = field(default_factory=Quota)
    pss_version: str = PSS_VERSION

    def __post_init__(self) -> None:
        for what, value in (
            ("namespace", self.namespace),
            ("service account", self.service_account),
        ):
            if not _DNS_LABEL.match(value) or len(value) > 63:
                raise ConfigError(
                    f"{what} {value!r} is not a valid Kubernetes name: use lower-case letters, "
                    "digits and '-', starting and ending with a letter or digit."
                )
        if self.api_server_cidr and not re.fullmatch(
            r"[0-9a-fA-F:.]+(/\d{1,3})?", self.api_server_cidr
        ):
            raise ConfigError(
                f"--api-server {self.api_server_cidr!r}: give an IP or CIDR, e.g. the address "
                "`kubectl get endpoints kubernetes -n default` shows."
            )
        if not re.fullmatch(r"v1\.\d+", self.pss_version):
            raise ConfigError(
                f"--pss-version {self.pss_version!r}: pin a Kubernetes minor version such as "
                f"{PSS_VERSION} (not 'latest', which moves with every cluster upgrade)."
            )
        self.tenants()  # refuse a bad user or team list here, before anything is written

    def tenants(self) -> list[Tenant]:
        return tenants(
            self.per,
            self.users,
            self.teams,
            self.namespace,
            self.namespace_prefix,
            self.service_account,
        )


def _labels() -> dict[str, str]:
    return {MANAGED_BY: "nbcontainers", "app.kubernetes.io/name": "nbcontainers"}


def _meta(name: str, namespace: str) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "labels": _labels()}


def _namespace(tenant: Tenant, options: ManifestOptions) -> dict[str, Any]:
    labels = _labels() | {KERNEL_NAMESPACE_LABEL: "true"}
    for mode in ("enforce", "audit", "warn"):
        labels[f"{PSS_LABEL}{mode}"] = "restricted"
        labels[f"{PSS_LABEL}{mode}-version"] = (
            options.pss_version if mode == "enforce" else "latest"
        )
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": tenant.namespace,
            "labels": labels,
            "annotations": {
                "nbcontainers.io/members": ",".join(tenant.members)[:4096],
            },
        },
    }


def _limits(tenant: Tenant, quota: Quota) -> list[dict[str, Any]]:
    hard = {
        "pods": str(quota.pods),
        "requests.cpu": quota.cpu,
        "limits.cpu": quota.cpu,
        "requests.memory": quota.memory,
        "limits.memory": quota.memory,
        f"requests.{GPU_RESOURCE}": str(quota.gpus),
        # Each kernel makes one Secret; a cap keeps a user from filling the cluster's store
        # with them. No Service or volume claim may be made here.
        "count/secrets": str(quota.pods * 2),
        "services": "0",
        "persistentvolumeclaims": "0",
    }
    return [
        {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": _meta(ROLE, tenant.namespace),
            "spec": {"hard": hard},
        },
        {
            "apiVersion": "v1",
            "kind": "LimitRange",
            "metadata": _meta(ROLE, tenant.namespace),
            "spec": {
                "limits": [
                    {
                        # A kernel that sets no limits gets these (the quota needs them set).
                        "type": "Container",
                        "default": {"cpu": quota.default_cpu, "memory": quota.default_memory},
                        "defaultRequest": {"cpu": "100m", "memory": "256Mi"},
                        "max": {"cpu": quota.max_cpu, "memory": quota.max_memory},
                    }
                ]
            },
        },
    ]


def _rbac(tenant: Tenant, options: ManifestOptions) -> list[dict[str, Any]]:
    rules = [
        {"apiGroups": [rule.api_group], "resources": [rule.resource], "verbs": list(rule.verbs)}
        for rule in ROLE_RULES
        if not rule.pod_policy  # the namespace's policies are the admin's (below)
    ]
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": _meta(ROLE, tenant.namespace),
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": _meta(ROLE, tenant.namespace),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ROLE},
            # The tenant's account lives in the hub's namespace (a pod's account must be in
            # the pod's namespace), but this binding gives it rights here and only here.
            "subjects": [
                {"kind": "ServiceAccount", "name": tenant.account, "namespace": options.namespace}
            ],
        },
    ]


def _policies(tenant: Tenant, hub_namespace: str) -> list[dict[str, Any]]:
    kernels = {"matchLabels": {COMPONENT: KERNEL_COMPONENT}}
    return [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": _meta("nbc-kernels-ingress", tenant.namespace),
            "spec": {
                # Every kernel pod: only this tenant's notebook pods may connect, in the hub's
                # namespace, labelled by the hub's hook (users can't label pods there).
                "podSelector": kernels,
                "policyTypes": ["Ingress"],
                "ingress": [
                    {
                        "from": [
                            {
                                "namespaceSelector": {
                                    "matchLabels": {"kubernetes.io/metadata.name": hub_namespace}
                                },
                                "podSelector": {"matchLabels": {TENANT_LABEL: tenant.namespace}},
                            }
                        ]
                    }
                ],
            },
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": _meta("nbc-kernels-egress", tenant.namespace),
            "spec": {
                # What Zero to JupyterHub allows notebook pods by default: DNS, and addresses
                # outside private ranges (PyPI, say); never the cloud's metadata server.
                "podSelector": kernels,
                "policyTypes": ["Egress"],
                "egress": [
                    {
                        "to": [{"namespaceSelector": {}, "podSelector": {}}],
                        "ports": [{"port": 53, "protocol": p} for p in ("UDP", "TCP")],
                    },
                    {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": list(PRIVATE_RANGES)}}]},
                ],
            },
        },
    ]


def cluster_objects(options: ManifestOptions) -> list[dict[str, Any]]:
    """For each user or team: its notebook ServiceAccount in the hub's namespace (and
    nothing else there), then its kernel namespace with the quota, the limits, the Role and
    RoleBinding, and the kernels' NetworkPolicies."""
    objects: list[dict[str, Any]] = []
    for tenant in options.tenants():
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": _meta(tenant.account, options.namespace),
                # Only the notebook pods the hub's hook names it in get its token
                # (automountServiceAccountToken set there); no other pod does.
                "automountServiceAccountToken": False,
            }
        )
        objects.append(_namespace(tenant, options))
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                # The namespace's own "default": pods a user makes there get no token (it has
                # no rights either; this is depth, not the boundary).
                "metadata": _meta("default", tenant.namespace),
                "automountServiceAccountToken": False,
            }
        )
        objects.extend(_limits(tenant, options.quota))
        objects.extend(_rbac(tenant, options))
        objects.extend(_policies(tenant, options.namespace))
    return objects


def z2jh_values(options: ManifestOptions) -> dict[str, Any]:
    """The Zero to JupyterHub values (see ``values.py``)."""
    from .values import z2jh_values as values

    return values(options)
