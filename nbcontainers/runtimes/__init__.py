"""Container runtimes behind one Protocol, found by name through the entry point group
``nbcontainers.runtimes`` so that another package can add an engine."""

from __future__ import annotations

import os
import shutil
import threading
from importlib.metadata import entry_points
from pathlib import Path

from ..errors import ConfigError, did_you_mean
from .base import (
    BuildEvent,
    BuildRequest,
    ContainerRuntime,
    ContainerSpec,
    ContainerState,
    ContainerStats,
    EngineFacts,
    ExecResult,
    GPURequest,
    ImageInfo,
    Mount,
    Placement,
    parse_placement,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "BuildEvent",
    "BuildRequest",
    "ContainerRuntime",
    "ContainerSpec",
    "ContainerState",
    "ContainerStats",
    "EngineFacts",
    "ExecResult",
    "GPURequest",
    "ImageInfo",
    "Mount",
    "Placement",
    "available_runtimes",
    "choose_engine",
    "get_runtime",
    "parse_placement",
    "shared_runtime",
]

ENTRY_POINT_GROUP = "nbcontainers.runtimes"
# Built in, so that a checkout used without `pip install` still finds its own engines.
_BUILT_IN = {
    "docker": "nbcontainers.runtimes.docker:DockerRuntime",
    "podman": "nbcontainers.runtimes.podman:PodmanRuntime",
    "kubernetes": "nbcontainers.runtimes.kubernetes:KubernetesRuntime",
    "swarm": "nbcontainers.runtimes.swarm:SwarmRuntime",
}
AUTO = "auto"


def available_runtimes() -> dict[str, str]:
    """Runtime name -> ``module:Class`` for every registered engine."""
    found = dict(_BUILT_IN)
    found.update({ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)})
    return found


def choose_engine() -> tuple[str, str | None, str]:
    """What ``runtime = "auto"`` means here: (runtime name, endpoint or None, why).

    An explicit ``DOCKER_HOST`` wins; else a non-root user's own rootless engine (rootless
    Docker's socket where it runs, else Podman, started on demand); else the system engine.
    """
    host = os.environ.get("DOCKER_HOST")
    if host:
        kind = "podman" if "podman" in host else "docker"
        return kind, host, "DOCKER_HOST is set"
    if os.getuid() != 0:
        run_dir = os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid()}"
        rootless_docker = Path(run_dir) / "docker.sock"
        if rootless_docker.is_socket():
            return "docker", f"unix://{rootless_docker}", "your rootless Docker engine"
        if shutil.which("podman"):
            return "podman", None, "your rootless Podman engine"
    return "docker", None, "the system engine"


def get_runtime(name: str = AUTO) -> ContainerRuntime:
    """A new runtime of the engine registered as ``name`` (``auto``: see choose_engine)."""
    import importlib

    endpoint = None
    if name == AUTO:
        name, endpoint, _why = choose_engine()
    known = available_runtimes()
    if name not in known:
        raise ConfigError(
            f"Unknown runtime {name!r}.{did_you_mean(name, [*known, AUTO])} "
            f"Known runtimes: {', '.join(sorted([*known, AUTO]))}; another package adds one "
            f"under the entry point group {ENTRY_POINT_GROUP!r}."
        )
    module_name, _, attr = known[name].partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"Runtime {name!r} ({known[name]}) can't be loaded: {exc}") from None
    runtime: ContainerRuntime = factory(endpoint) if endpoint else factory()
    return runtime


_SHARED: dict[tuple[str, str | None], ContainerRuntime] = {}
_SHARED_LOCK = threading.Lock()


def shared_runtime(name: str = AUTO) -> ContainerRuntime:
    """This process's runtime for ``name``, made on first use and kept while ``auto`` keeps
    meaning the same engine. Kernel starts share it: a new one costs ~10 ms before its first
    call (finding the registered engines, the SDK asking the engine's API version), and its
    connection to the engine stays open between starts."""
    key = (name, None) if name != AUTO else choose_engine()[:2]
    with _SHARED_LOCK:
        runtime = _SHARED.get(key)
        if runtime is None:
            runtime = _SHARED[key] = get_runtime(name)
        return runtime
