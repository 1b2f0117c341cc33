"""The admin's kernel pod template (``NBC_K8S_POD_TEMPLATE``): a Pod manifest whose fields
every kernel pod starts from, such as tolerations, affinity, a priority class, a runtime
class, labels or annotations.

What nbcontainers sets wins over the template, and the security settings are never the
template's: both security contexts (the init containers' too), the service-account token,
the host namespaces and the restart policy are always nbcontainers' own. Kernel namespaces
enforce Pod Security ``restricted``, so a template that would break it is refused here, with
the field, rather than by the cluster at every kernel start: another container, a volume of a
type ``restricted`` forbids (hostPath, nfs, ...), a host port, an AppArmor or seccomp
annotation that turns confinement off.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...errors import ConfigError
from .names import CONTAINER

__all__ = ["RESTRICTED_VOLUMES", "apply_template", "load_template"]

# Lists that the template extends (its items first), matched by this key; other lists and
# all scalars are nbcontainers' own where it sets them.
_JOINED = {
    "volumes": "name",
    "volumeMounts": "mountPath",
    "env": "name",
    "tolerations": None,
    "imagePullSecrets": "name",
    "ports": "containerPort",
}
# The volume types Pod Security "restricted" admits.
RESTRICTED_VOLUMES = (
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
)
_POD_OWN = (
    "securityContext",
    "automountServiceAccountToken",
    "hostNetwork",
    "hostPID",
    "hostIPC",
    "restartPolicy",
    "enableServiceLinks",
)


def load_template(path: str) -> dict[str, Any]:
    """The Pod manifest (YAML or JSON) at ``path``, checked for what it may not add."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"NBC_K8S_POD_TEMPLATE={path}: can't read it ({exc}).") from None
    if not isinstance(data, dict) or not isinstance(data.get("spec", {}), dict):
        raise ConfigError(f"NBC_K8S_POD_TEMPLATE={path}: give a Pod manifest (with a spec).")
    spec = data.get("spec") or {}
    others = [c.get("name") for c in spec.get("containers") or () if c.get("name") != CONTAINER]
    if others:
        raise ConfigError(
            f"NBC_K8S_POD_TEMPLATE={path}: a kernel pod has one container, {CONTAINER!r}; "
            f"remove {', '.join(map(repr, others))} (initContainers may stay)."
        )
    if any("hostPath" in (volume or {}) for volume in spec.get("volumes") or ()):
        raise ConfigError(
            f"NBC_K8S_POD_TEMPLATE={path}: hostPath volumes would give kernels the node's "
            "files; use a PersistentVolumeClaim or a CSI volume instead."
        )
    _check_restricted(path, data, spec)
    return data


def _check_restricted(path: str, data: Mapping[str, Any], spec: Mapping[str, Any]) -> None:
    """Refuse what Pod Security ``restricted`` refuses and nbcontainers would not override."""
    for volume in spec.get("volumes") or ():
        kinds = sorted(set(volume or {}) - {"name"} - set(RESTRICTED_VOLUMES))
        if kinds:
            raise ConfigError(
                f"NBC_K8S_POD_TEMPLATE={path}: volume {volume.get('name')!r} is {kinds[0]}, "
                "which Pod Security 'restricted' (enforced in kernel namespaces) refuses; use "
                f"one of {', '.join(RESTRICTED_VOLUMES)}."
            )
    if spec.get("ephemeralContainers"):
        raise ConfigError(f"NBC_K8S_POD_TEMPLATE={path}: remove ephemeralContainers.")
    for container in [*(spec.get("containers") or ()), *(spec.get("initContainers") or ())]:
        if any((port or {}).get("hostPort") for port in container.get("ports") or ()):
            raise ConfigError(
                f"NBC_K8S_POD_TEMPLATE={path}: container {container.get('name')!r} asks for a "
                "hostPort, which Pod Security refuses; remove it (kernels are reached through "
                "the pod network)."
            )
    annotations = (data.get("metadata") or {}).get("annotations") or {}
    for key, value in annotations.items():
        apparmor = key.startswith("container.apparmor.security.beta.kubernetes.io/")
        seccomp = key.startswith(("seccomp.security.alpha.kubernetes.io/", "container.seccomp"))
        if (apparmor and value != "runtime/default" and not value.startswith("localhost/")) or (
            seccomp and value not in ("runtime/default", "docker/default")
        ):
            raise ConfigError(
                f"NBC_K8S_POD_TEMPLATE={path}: annotation {key}={value} turns confinement "
                "off, which Pod Security refuses; remove it."
            )


def _merge(template: Any, ours: Any, key: str = "") -> Any:
    if isinstance(template, dict) and isinstance(ours, dict):
        merged = dict(template)
        for name, value in ours.items():
            merged[name] = _merge(template.get(name), value, name) if name in template else value
        return merged
    if isinstance(template, list) and isinstance(ours, list) and key in _JOINED:
        match = _JOINED[key]
        mine = {item.get(match) for item in ours if match and isinstance(item, dict)}
        kept = [item for item in template if not (match and item.get(match) in mine)]
        return kept + ours
    return ours


def apply_template(pod: Mapping[str, Any], template: Mapping[str, Any]) -> dict[str, Any]:
    """The pod (in the API's wire format) laid over the template, nbcontainers winning."""
    if not template:
        return dict(pod)
    template_spec = dict(template.get("spec") or {})
    kernel: dict[str, Any] = next(
        (c for c in template_spec.pop("containers", None) or () if c.get("name") == CONTAINER),
        {},
    )
    merged: dict[str, Any] = _merge(
        {"metadata": template.get("metadata") or {}, "spec": template_spec}, pod
    )
    spec = merged["spec"]
    for field in _POD_OWN:  # never the template's, even where nbcontainers left them unset
        spec.pop(field, None)
        if field in pod["spec"]:
            spec[field] = pod["spec"][field]
    ours = pod["spec"]["containers"][0]
    container = _merge({k: v for k, v in kernel.items() if k != "securityContext"}, ours)
    spec["containers"] = [container]
    # Init containers run in the kernel's pod, under the same rules as the kernel.
    inits = [
        {**init, "securityContext": dict(ours.get("securityContext") or {})}
        for init in spec.pop("initContainers", None) or ()
    ]
    if inits:
        spec["initContainers"] = inits
    merged["metadata"].pop("name", None)
    merged["metadata"].pop("generateName", None)
    merged["metadata"].update({k: pod["metadata"][k] for k in ("name", "namespace")})
    return merged
