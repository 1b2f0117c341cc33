"""The cluster objects the Kubernetes runtime needs, and the Zero to JupyterHub values that
switch it on: a ServiceAccount for the notebook servers, a namespaced Role with only the
verbs the runtime calls (``runtimes.k8s_names.ROLE_RULES``) and its RoleBinding, a
NetworkPolicy that shuts every kernel pod's ports until its own policy (made by the runtime
with the pod) lets the owning notebook pod in, one that keeps kernels' connections to DNS
and public addresses, and the ``singleuser`` values.

Plain dicts, in the API's own field names; ``kubectl apply -f`` and ``helm upgrade -f`` take
them as YAML. Nothing here talks to a cluster or imports its client.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from ..runtimes.k8s_names import (
    COMPONENT,
    KERNEL_COMPONENT,
    MANAGED_BY,
    ROLE,
    ROLE_RULES,
    SERVICE_ACCOUNT,
)

__all__ = [
    "API_SERVER_PORTS",
    "PRIVATE_RANGES",
    "PROVISIONER_CONFIG",
    "SERVER_CONFIG_PATH",
    "ManifestOptions",
    "cluster_objects",
    "z2jh_values",
]

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
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


@dataclass(frozen=True)
class ManifestOptions:
    """What ``nbcontainers k8s manifests`` asks: the namespace the notebook servers and their
    kernels share, the service account's name, the API server's address as a CIDR ("" allows
    its ports to any address)."""

    namespace: str = "jupyterhub"
    service_account: str = SERVICE_ACCOUNT
    api_server_cidr: str = ""

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


def _labels() -> dict[str, str]:
    return {MANAGED_BY: "nbcontainers", "app.kubernetes.io/name": "nbcontainers"}


def _meta(name: str, options: ManifestOptions) -> dict[str, Any]:
    return {"name": name, "namespace": options.namespace, "labels": _labels()}


def cluster_objects(options: ManifestOptions) -> list[dict[str, Any]]:
    """ServiceAccount, Role, RoleBinding, and the kernels' NetworkPolicies: no ingress but
    what each kernel's own policy allows, egress to DNS and public addresses only."""
    rules = [
        {"apiGroups": [rule.api_group], "resources": [rule.resource], "verbs": list(rule.verbs)}
        for rule in ROLE_RULES
    ]
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": _meta(options.service_account, options),
            # Only the notebook pods that name it get its token (KubeSpawner mounts it when
            # singleuser.serviceAccountName is set); kernel pods never do.
            "automountServiceAccountToken": False,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": _meta(ROLE, options),
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": _meta(ROLE, options),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ROLE},
            "subjects": [
                {
                    "kind": "ServiceAccount",
                    "name": options.service_account,
                    "namespace": options.namespace,
                }
            ],
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": _meta("nbc-kernels-deny-ingress", options),
            "spec": {
                # Every kernel pod: nothing may connect unless the pod's own policy (the
                # runtime makes one per kernel) lets its notebook pod reach its ports.
                "podSelector": {"matchLabels": {COMPONENT: KERNEL_COMPONENT}},
                "policyTypes": ["Ingress"],
                "ingress": [],
            },
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": _meta("nbc-kernels-egress", options),
            "spec": {
                # What Zero to JupyterHub allows notebook pods by default: DNS, and addresses
                # outside private ranges (PyPI, say); never the cloud's metadata server.
                "podSelector": {"matchLabels": {COMPONENT: KERNEL_COMPONENT}},
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


def z2jh_values(options: ManifestOptions) -> dict[str, Any]:
    """The ``singleuser`` values for the Zero to JupyterHub chart: the service account, egress
    from notebook pods to kernel pods and to the API server, and the provisioner settings as a
    Jupyter Server config file."""
    api_server: dict[str, Any] = {
        "ports": [{"port": port, "protocol": "TCP"} for port in API_SERVER_PORTS]
    }
    if options.api_server_cidr:
        cidr = options.api_server_cidr
        api_server["to"] = [{"ipBlock": {"cidr": cidr if "/" in cidr else f"{cidr}/32"}}]
    return {
        "singleuser": {
            "serviceAccountName": options.service_account,
            "networkPolicy": {
                "enabled": True,
                "egress": [
                    {"to": [{"podSelector": {"matchLabels": {COMPONENT: KERNEL_COMPONENT}}}]},
                    api_server,
                ],
            },
            "extraEnv": {"NBC_K8S_NAMESPACE": options.namespace},
            "extraFiles": {
                "nbcontainers-kubernetes": {
                    "mountPath": SERVER_CONFIG_PATH,
                    "data": {"ContainerProvisioner": dict(PROVISIONER_CONFIG)},
                }
            },
        }
    }
