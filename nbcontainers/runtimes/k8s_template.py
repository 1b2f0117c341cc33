"""The admin's kernel pod template (``NBC_K8S_POD_TEMPLATE``): a Pod manifest whose fields
every kernel pod starts from, such as tolerations, affinity, a priority class, a runtime
class, labels or annotations.

What nbcontainers sets wins over the template, and the security settings are never the
template's: both security contexts, the service-account token, the host namespaces and the
restart policy are always nbcontainers' own. A template that adds a container or a hostPath
volume is refused, since a kernel pod has one container and no host files.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .k8s_names import CONTAINER

__all__ = ["apply_template", "load_template"]

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
    return data


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
    merged["metadata"].pop("name", None)
    merged["metadata"].pop("generateName", None)
    merged["metadata"].update({k: pod["metadata"][k] for k in ("name", "namespace")})
    return merged
