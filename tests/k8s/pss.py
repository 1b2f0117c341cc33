"""The Pod Security Standards, as the Pod Security admission controller applies them to one
pod in a namespace: the namespace's ``pod-security.kubernetes.io/enforce`` label picks the
level, and a pod that breaks one of its controls is refused.

The controls are written from the standard itself
(https://kubernetes.io/docs/concepts/security/pod-security-standards/, the Baseline and
Restricted tables), over a pod in the API's wire format (camelCase dicts). Each check returns
the control's name and the field that breaks it; an empty list is an admitted pod.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ENFORCE = "pod-security.kubernetes.io/enforce"
BASELINE_CAPS = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)
SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t"})
RESTRICTED_VOLUMES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)


def _containers(spec: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [
        c
        for key in ("containers", "initContainers", "ephemeralContainers")
        for c in spec.get(key) or ()
    ]


def baseline(pod: Mapping[str, Any]) -> list[str]:
    """The Baseline controls a pod breaks."""
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    pod_sc = spec.get("securityContext") or {}
    broken = []
    if (pod_sc.get("windowsOptions") or {}).get("hostProcess"):
        broken.append("HostProcess: spec.securityContext.windowsOptions.hostProcess")
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            broken.append(f"Host Namespaces: spec.{field}")
    for volume in spec.get("volumes") or ():
        if "hostPath" in volume:
            broken.append(f"HostPath Volumes: volume {volume.get('name')}")
    for key, value in (meta.get("annotations") or {}).items():
        if key.startswith("container.apparmor.security.beta.kubernetes.io/") and not (
            value == "runtime/default" or value.startswith("localhost/")
        ):
            broken.append(f"AppArmor: annotation {key}={value}")
    for sysctl in pod_sc.get("sysctls") or ():
        if sysctl.get("name") not in SAFE_SYSCTLS:
            broken.append(f"Sysctls: {sysctl.get('name')}")
    contexts = [("pod", pod_sc)] + [
        (c.get("name", "?"), c.get("securityContext") or {}) for c in _containers(spec)
    ]
    for who, sc in contexts:
        selinux = sc.get("seLinuxOptions") or {}
        if (
            selinux.get("type", "") not in SELINUX_TYPES
            or selinux.get("user")
            or selinux.get("role")
        ):
            broken.append(f"SELinux: {who}")
        if (sc.get("seccompProfile") or {}).get("type") == "Unconfined":
            broken.append(f"Seccomp: {who} is Unconfined")
        if (sc.get("appArmorProfile") or {}).get("type") not in (
            None,
            "RuntimeDefault",
            "Localhost",
        ):
            broken.append(f"AppArmor: {who}")
    for container in _containers(spec):
        name, sc = container.get("name", "?"), container.get("securityContext") or {}
        if (sc.get("windowsOptions") or {}).get("hostProcess"):
            broken.append(f"HostProcess: container {name}")
        if sc.get("privileged"):
            broken.append(f"Privileged Containers: container {name}")
        added = set((sc.get("capabilities") or {}).get("add") or ())
        if added - BASELINE_CAPS:
            broken.append(f"Capabilities: container {name} adds {sorted(added - BASELINE_CAPS)}")
        if any(port.get("hostPort") for port in container.get("ports") or ()):
            broken.append(f"Host Ports: container {name}")
        if sc.get("procMount") not in (None, "Default"):
            broken.append(f"/proc Mount Type: container {name}")
    return broken


def restricted(pod: Mapping[str, Any]) -> list[str]:
    """The Restricted controls a pod breaks (Baseline's included)."""
    spec = pod.get("spec") or {}
    pod_sc = spec.get("securityContext") or {}
    broken = baseline(pod)
    for volume in spec.get("volumes") or ():
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            broken.append(f"Volume Types: volume {volume.get('name')} is {sorted(kinds)}")
    if pod_sc.get("runAsUser") == 0:
        broken.append("Running as Non-root user: spec.securityContext.runAsUser = 0")
    pod_seccomp = (pod_sc.get("seccompProfile") or {}).get("type")
    for container in _containers(spec):
        name, sc = container.get("name", "?"), container.get("securityContext") or {}
        if sc.get("allowPrivilegeEscalation") is not False:
            broken.append(f"Privilege Escalation: container {name}")
        non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
        if non_root is not True:
            broken.append(f"Running as Non-root: container {name}")
        if sc.get("runAsUser") == 0:
            broken.append(f"Running as Non-root user: container {name}")
        seccomp = (sc.get("seccompProfile") or {}).get("type", pod_seccomp)
        if seccomp not in ("RuntimeDefault", "Localhost"):
            broken.append(f"Seccomp: container {name} has {seccomp}")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or ()):
            broken.append(f"Capabilities: container {name} does not drop ALL")
        if set(caps.get("add") or ()) - {"NET_BIND_SERVICE"}:
            broken.append(f"Capabilities: container {name} adds more than NET_BIND_SERVICE")
    return broken


def admission(namespace_labels: Mapping[str, str], pod: Mapping[str, Any]) -> list[str]:
    """Why the namespace's Pod Security admission refuses ``pod`` (empty: admitted)."""
    level = namespace_labels.get(ENFORCE, "privileged")
    if level == "restricted":
        return restricted(pod)
    if level == "baseline":
        return baseline(pod)
    return []


# Pods an attacker would make, to test that a namespace refuses them.
ATTACK_PODS: dict[str, dict[str, Any]] = {
    "privileged": {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "x"},
        "spec": {
            "containers": [{"name": "x", "image": "i", "securityContext": {"privileged": True}}]
        },
    },
    "hostPath /": {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "x"},
        "spec": {
            "containers": [
                {"name": "x", "image": "i", "volumeMounts": [{"name": "r", "mountPath": "/h"}]}
            ],
            "volumes": [{"name": "r", "hostPath": {"path": "/"}}],
        },
    },
    "hostPID": {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "x"},
        "spec": {"hostPID": True, "containers": [{"name": "x", "image": "i"}]},
    },
    "root, default settings": {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "x"},
        "spec": {"containers": [{"name": "x", "image": "i"}]},
    },
}
