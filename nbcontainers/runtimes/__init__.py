"""Container runtimes behind one Protocol, found by name through the entry point group
``nbcontainers.runtimes`` so that another package can add an engine."""

from __future__ import annotations

from importlib.metadata import entry_points

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
    "available_runtimes",
    "get_runtime",
]

ENTRY_POINT_GROUP = "nbcontainers.runtimes"
# Built in, so that a checkout used without `pip install` still finds its own engines.
_BUILT_IN = {"docker": "nbcontainers.runtimes.docker:DockerRuntime"}


def available_runtimes() -> dict[str, str]:
    """Runtime name -> ``module:Class`` for every registered engine."""
    found = dict(_BUILT_IN)
    found.update({ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)})
    return found


def get_runtime(name: str = "docker") -> ContainerRuntime:
    """A new runtime of the engine registered as ``name``."""
    import importlib

    known = available_runtimes()
    if name not in known:
        raise ConfigError(
            f"Unknown runtime {name!r}.{did_you_mean(name, known)} "
            f"Known runtimes: {', '.join(sorted(known))}; another package adds one under the "
            f"entry point group {ENTRY_POINT_GROUP!r}."
        )
    module_name, _, attr = known[name].partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"Runtime {name!r} ({known[name]}) can't be loaded: {exc}") from None
    runtime: ContainerRuntime = factory()
    return runtime
