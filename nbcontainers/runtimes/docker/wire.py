"""What the Docker Engine API answers, as nbcontainers values; and what to say when it
doesn't. Podman's Docker-compatible API answers in the same shapes."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ...errors import RuntimeFailure
from ..base import (
    ContainerSpec,
    ContainerState,
    ContainerStats,
    EngineFacts,
    ImageInfo,
    ProgressCallback,
)

__all__ = [
    "CPUCounters",
    "ListedStates",
    "device_requests",
    "engine_fix_hint",
    "explanation",
    "facts_from",
    "follow_events",
    "host_config",
    "images_from",
    "label_filter",
    "one_shot_supported",
    "repo_and_tag",
    "state_from",
    "stats_from",
    "stats_since",
]


def engine_fix_hint(endpoint: str, detail: str = "") -> str:
    """Say why the engine at ``endpoint`` may not answer and the command that fixes it."""
    if "Permission denied" in detail or "PermissionError" in detail:
        return (
            f"Permission denied on {endpoint}. Use your own rootless engine: install Podman "
            "(`sudo apt-get install podman uidmap`) and leave `runtime` at 'auto', or on a "
            "JupyterHub ask your admin to run `nbcontainers hub setup`. On a machine of your "
            "own, `sudo usermod -aG docker $USER` (then log in again) works too, but the docker "
            "group is root-equivalent; or set DOCKER_HOST to another engine."
        )
    if shutil.which("dockerd") is None and endpoint.startswith("unix://"):
        return (
            "No Docker engine is installed here. Install and start one with "
            "`sudo apt-get install docker.io` (in a checkout, `make engine`); "
            "set DOCKER_HOST to use an engine elsewhere."
        )
    return (
        "Is it running? Start it with `sudo systemctl start docker` "
        "(or `sudo dockerd &` where systemd is not running); "
        "set DOCKER_HOST to use another engine."
    )


def facts_from(version: Mapping[str, Any], info: Mapping[str, Any], endpoint: str) -> EngineFacts:
    """Engine facts from ``/version`` and ``/info``; Podman's Docker API answers these too."""
    components = {str(c.get("Name", "")).lower() for c in version.get("Components") or ()}
    security = " ".join(info.get("SecurityOptions") or ())
    name = "podman" if any("podman" in c for c in components) else "docker"
    rootless = "rootless" in security
    cgroup_v2 = str(info.get("CgroupVersion", "1")) == "2"
    # A rootless engine enforces limits only through cgroup v2 delegation.
    limits: frozenset[str] = frozenset({"shm"})
    if not rootless or cgroup_v2:
        limits = frozenset(
            {"memory", "cpus", "pids", "shm"}
            if info.get("MemoryLimit", True) is not False
            else {"cpus", "pids", "shm"}
        )
    runtimes = tuple(sorted((info.get("Runtimes") or {}).keys()))
    return EngineFacts(
        name=name,
        version=str(version.get("Version", "?")),
        api_version=str(version.get("ApiVersion", "?")),
        endpoint=endpoint,
        os=str(info.get("OperatingSystem", "?")),
        rootless=rootless,
        gpu_mode="cdi" if name == "podman" else "device-requests",
        limits=limits,
        runtimes=runtimes,
        gpu_setup=""
        if "nvidia" in runtimes or name == "podman"
        else "nvidia-ctk runtime configure --runtime=docker",
    )


def stats_from(raw: Mapping[str, Any]) -> ContainerStats:
    """Docker's stats JSON as CPU percent of one CPU and memory bytes."""
    cpu: float | None = None
    try:
        now, before = raw["cpu_stats"], raw["precpu_stats"]
        used = now["cpu_usage"]["total_usage"] - before["cpu_usage"]["total_usage"]
        elapsed = now["system_cpu_usage"] - before.get("system_cpu_usage", 0)
        cpus = now.get("online_cpus") or 1
        cpu = 100.0 * used / elapsed * cpus if elapsed > 0 else 0.0
    except (KeyError, TypeError):
        pass  # a stopped container, or an engine that omits the previous sample
    memory = raw.get("memory_stats") or {}
    return ContainerStats(
        cpu_percent=cpu,
        memory_used=int(memory["usage"]) if "usage" in memory else None,
        memory_limit=int(memory["limit"]) if "limit" in memory else None,
    )


def explanation(exc: Any) -> str:
    explanation = getattr(exc, "explanation", None)
    if isinstance(explanation, bytes):
        explanation = explanation.decode("utf-8", "replace")
    text = str(explanation or exc)
    if "catatonit" in text:
        text += " — Podman's init is missing: `sudo apt-get install catatonit`."
    if "could not select device driver" in text:
        text += (
            " — the engine has no GPU support. Install the NVIDIA Container Toolkit "
            "(`nvidia-ctk runtime configure --runtime=docker`, then restart the engine)."
        )
    return text


def state_from(data: Mapping[str, Any]) -> ContainerState:
    st = data.get("State") or {}
    config = data.get("Config") or {}
    return ContainerState(
        id=str(data.get("Id", "")),
        name=str(data.get("Name", "")).lstrip("/"),
        image=str(config.get("Image", "")),
        status=str(st.get("Status", "unknown")),
        exit_code=int(st["ExitCode"]) if st.get("Status") in ("exited", "dead") else None,
        oom_killed=bool(st.get("OOMKilled", False)),
        labels=dict(config.get("Labels") or {}),
        started_at=str(st.get("StartedAt", "")),
        error=str(st.get("Error", "")),
        image_id=str(data.get("Image", "")),
    )


def _short(tag: str) -> str:
    # Podman qualifies short names ("localhost/nbcontainers/python:…"); callers use ours.
    for prefix in ("localhost/", "docker.io/"):
        if tag.startswith(prefix):
            return tag[len(prefix) :]
    return tag


def label_filter(labels: Mapping[str, str | None] | None) -> dict[str, list[str]] | None:
    """The Engine API's filter for containers, services or images with every label given
    (a None value: any label value); None when no label is given."""
    wanted = [k if v is None else f"{k}={v}" for k, v in (labels or {}).items()]
    return {"label": wanted} if wanted else None


def images_from(rows: Iterable[Mapping[str, Any]], repository: str | None) -> list[ImageInfo]:
    """The Engine API's image list rows as ImageInfo, kept to those with a tag in
    ``repository`` when one is given; an untagged image has no tags (not ``<none>:<none>``)."""
    found = []
    for row in rows:
        tags = tuple(_short(t) for t in row.get("RepoTags") or () if t != "<none>:<none>")
        if repository is not None and not any(t.rpartition(":")[0] == repository for t in tags):
            continue
        created = row.get("Created", "")
        if isinstance(created, int):  # the list answers epoch seconds, inspect an ISO date
            created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created))
        digests = tuple(d for d in row.get("RepoDigests") or () if d != "<none>@<none>")
        labels = dict(row.get("Labels") or {})
        found.append(
            ImageInfo(
                str(row.get("Id", "")),
                tags,
                digests,
                labels,
                int(row.get("Size") or 0),
                str(created),
            )
        )
    return found


_MOVING = {"Downloading", "Pushing"}  # a layer's bytes on the wire, with current and total
_FINISHED = {"Download complete", "Pull complete", "Already exists", "Pushed"}
_HAD = ("Layer already exists", "Mounted from")


def follow_events(
    events: Iterable[Mapping[str, Any]],
    what: str,
    progress: ProgressCallback | None,
    failure: Callable[[str], str],
) -> str:
    """Follow a pull's or push's event stream: the bytes its layers move over the wire (not
    their extraction afterwards, which would count them twice) and how many layers are done
    go to ``progress``; raise on an error event; return the digest the engine reports."""
    moved: dict[str, tuple[int, int]] = {}  # layer id -> (bytes moved, its size)
    layers: set[str] = set()
    finished: set[str] = set()
    digest = ""
    for event in events:
        if "error" in event:
            raise RuntimeFailure(failure(str(event["error"])))
        digest = str((event.get("aux") or {}).get("Digest") or digest)
        layer, status = str(event.get("id") or ""), str(event.get("status") or "")
        if not layer or status.startswith(("Pulling from", "The push refers")):
            continue  # about the whole image (its id is the tag), not a layer
        layers.add(layer)
        detail = event.get("progressDetail") or {}
        if status in _MOVING and detail.get("total"):
            moved[layer] = (int(detail.get("current", 0)), int(detail["total"]))
        elif status in _FINISHED or status.startswith(_HAD):
            finished.add(layer)
            if layer in moved:
                moved[layer] = (moved[layer][1], moved[layer][1])
        else:
            continue
        if progress and moved:
            progress(
                f"{what}, {len(finished)}/{len(layers)} layers",
                sum(c for c, _ in moved.values()),
                sum(t for _, t in moved.values()),
            )
    return digest


def repo_and_tag(ref: str) -> tuple[str, str]:
    """``registry/repo:tag`` as the Engine API takes it: repo and tag ("latest" if none); for
    ``repo@sha256:…`` the digest, which the API's ``tag`` takes too."""
    if "@" in ref:
        # A digest's own colon is not a tag's: splitting at the last ':' would ask the engine
        # for tag "<hex>" of "repo@sha256".
        repo, _, digest = ref.partition("@")
        return repo, digest
    repo, _, tag = ref.rpartition(":") if ":" in ref.split("/")[-1] else (ref, "", "latest")
    return repo, tag or "latest"


def device_requests(**request: Any) -> dict[str, Any]:
    """HostConfig arguments for one device request (``driver``, ``count``, ``device_ids``,
    ``capabilities``), for this runtime and the engines that speak its API."""
    import docker.types

    return {"device_requests": [docker.types.DeviceRequest(**request)]}


def host_config(api: Any, spec: ContainerSpec, gpu_options: dict[str, Any]) -> Any:
    """The engine's HostConfig for ``spec``: mounts, limits, GPUs and the security settings."""
    import docker.types

    port_bindings = {f"{c}/tcp": (ip, p) for c, (ip, p) in spec.ports.items()}
    return api.create_host_config(
        mounts=[
            docker.types.Mount(m.target, m.source, type="bind", read_only=m.read_only)
            for m in spec.mounts
        ],
        tmpfs=dict(spec.tmpfs) or None,
        network_mode=spec.network_mode,
        port_bindings=port_bindings or None,
        **gpu_options,
        mem_limit=spec.mem_limit,
        nano_cpus=spec.nano_cpus,
        shm_size=spec.shm_size,
        pids_limit=spec.pids_limit,
        cap_drop=list(spec.cap_drop) or None,
        security_opt=list(spec.security_opt) or None,
        init=spec.init,
        read_only=spec.read_only,
        privileged=False,
        devices=list(spec.devices) or None,  # only a CDI spec's GPU nodes (runtimes/cdi.py)
    )


# -- listing and sampling without asking twice ---------------------------------------------------

KEPT_STATES = 512  # inspected states kept for listings; the oldest go first
CPU_BASE_AGE = 30.0  # seconds a container's CPU counters serve as the base of the next sample
# A kept state is not reused while the container is in these: its start time or exit code moves.
_STIRRING = ("restarting", "removing")


class ListedStates:
    """Inspected states of listed containers, reused while a listing's row shows the same
    container in the same status under the same name.

    A listing's rows lack the start time, exit code and OOM flag that an inspect gives, and
    inspecting every row made a listing of 10 kernels 11 engine calls. nbcontainers starts a
    container once (a kernel restart makes a new one), so a running container's inspect stays
    true while it runs; an exited one's stays true until it runs again, which changes its row.
    Blind spot: a container restarted by hand and back in the same status between two
    listings keeps its earlier start time here.
    """

    def __init__(self) -> None:
        self.states: dict[str, ContainerState] = {}

    def reuse(self, row: Mapping[str, Any]) -> ContainerState | None:
        kept = self.states.get(str(row.get("Id", "")))
        if kept is None or kept.status in _STIRRING or row.get("State") != kept.status:
            return None
        names = {str(n).lstrip("/") for n in row.get("Names") or ()}
        return kept if kept.name in names else None

    def keep(self, listed: Iterable[ContainerState]) -> None:
        for state in listed:
            self.states.pop(state.id, None)  # to the end: the newest
            self.states[state.id] = state
        for old in list(self.states)[: max(0, len(self.states) - KEPT_STATES)]:
            self.states.pop(old, None)


class CPUCounters:
    """Each container's CPU counters from its last sample, so that the next can be a single
    sample (the engine's ``one_shot``) measured against it, instead of the engine waiting a
    second for two samples of its own."""

    def __init__(self) -> None:
        self.seen: dict[str, tuple[float, Mapping[str, Any]]] = {}
        self.one_shot = True  # False once the engine refused a one-shot call

    def previous(self, container_id: str) -> Mapping[str, Any] | None:
        kept = self.seen.get(container_id)
        if kept is None or time.monotonic() - kept[0] > CPU_BASE_AGE:
            return None  # an old base would average CPU over minutes: ask for two samples
        return kept[1]

    def keep(self, container_id: str, raw: Mapping[str, Any]) -> None:
        now = raw.get("cpu_stats") or {}
        if not now.get("system_cpu_usage"):
            return  # a stopped container has no counters
        self.seen.pop(container_id, None)
        self.seen[container_id] = (time.monotonic(), now)
        for old in list(self.seen)[: max(0, len(self.seen) - KEPT_STATES)]:
            self.seen.pop(old, None)


def one_shot_supported(api: Any) -> bool:
    """Whether the engine answers ``one_shot`` stats (Engine API 1.41; Podman's says 1.41)."""
    from docker.utils import version_gte

    try:
        return bool(version_gte(str(api.api_version), "1.41"))
    except Exception:  # an odd version string: the two-sample call always works
        return False


def stats_since(raw: Mapping[str, Any], before: Mapping[str, Any] | None) -> ContainerStats:
    """:func:`stats_from`, with CPU measured against ``before`` (this container's CPU counters
    from the previous sample) where the engine sent no previous sample of its own (a one-shot
    answer's ``precpu_stats`` is empty: its CPU would be the average since the start)."""
    stats = stats_from(raw)
    if ((raw.get("precpu_stats") or {}).get("system_cpu_usage") or 0) > 0:
        return stats
    cpu: float | None = None
    try:
        now = raw["cpu_stats"]
        if before is not None and now.get("system_cpu_usage"):
            used = now["cpu_usage"]["total_usage"] - before["cpu_usage"]["total_usage"]
            elapsed = now["system_cpu_usage"] - before["system_cpu_usage"]
            cpus = now.get("online_cpus") or 1
            cpu = max(0.0, 100.0 * used / elapsed * cpus) if elapsed > 0 else 0.0
    except (KeyError, TypeError):
        pass
    return ContainerStats(cpu, stats.memory_used, stats.memory_limit)
