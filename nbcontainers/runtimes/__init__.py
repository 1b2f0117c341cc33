"""Container runtimes behind one Protocol; Docker today, Swarm and Kubernetes later."""

from __future__ import annotations

from .base import ContainerRuntime, ContainerSpec, ContainerState, GPURequest, Mount

__all__ = [
    "ContainerRuntime",
    "ContainerSpec",
    "ContainerState",
    "GPURequest",
    "Mount",
    "get_runtime",
]


def get_runtime(name: str = "docker") -> ContainerRuntime:
    """Return a runtime by name. Only ``docker`` exists so far."""
    if name == "docker":
        from .docker import DockerRuntime

        return DockerRuntime()
    from ..errors import ConfigError, did_you_mean

    raise ConfigError(f"Unknown runtime {name!r}.{did_you_mean(name, ['docker'])}")
