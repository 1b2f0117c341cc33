"""The narrow seam between nbcontainers and a container engine: value types and the Protocol."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

__all__ = [
    "ContainerRuntime",
    "ContainerSpec",
    "ContainerState",
    "EngineInfo",
    "GPURequest",
    "ImageInfo",
    "Mount",
    "ProgressCallback",
]

# Called with (what, done, total) while pulling; total is None when unknown.
ProgressCallback = Callable[[str, int, "int | None"], None]


@dataclass(frozen=True)
class Mount:
    """A bind mount of a host path into the container."""

    source: str
    target: str
    read_only: bool = True


@dataclass(frozen=True)
class GPURequest:
    """Which GPUs a container gets: all of them, a count, or specific device ids."""

    count: int | None = None  # -1 means all
    device_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class ContainerSpec:
    """Everything needed to create and start one container."""

    image: str
    command: tuple[str, ...]
    name: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    mounts: tuple[Mount, ...] = ()
    tmpfs: Mapping[str, str] = field(default_factory=dict)
    working_dir: str | None = None
    user: str | None = None
    network_mode: str | None = None
    # container port -> (host ip, host port)
    ports: Mapping[int, tuple[str, int]] = field(default_factory=dict)
    gpus: GPURequest | None = None
    mem_limit: str | None = None
    nano_cpus: int | None = None
    shm_size: str | None = None
    pids_limit: int | None = None
    cap_drop: tuple[str, ...] = ("ALL",)
    security_opt: tuple[str, ...] = ("no-new-privileges",)
    init: bool = True
    read_only: bool = False  # root filesystem; pair with tmpfs for scratch space


@dataclass(frozen=True)
class ContainerState:
    """A snapshot of one container as the engine reports it."""

    id: str
    name: str
    image: str
    status: str  # created, running, paused, restarting, removing, exited, dead
    exit_code: int | None
    oom_killed: bool
    labels: Mapping[str, str]
    started_at: str = ""
    error: str = ""

    @property
    def running(self) -> bool:
        return self.status in ("running", "restarting", "paused", "created")


@dataclass(frozen=True)
class ImageInfo:
    """What the engine knows of a local image."""

    id: str
    tags: tuple[str, ...]
    repo_digests: tuple[str, ...]
    labels: Mapping[str, str]
    size: int
    created: str


@dataclass(frozen=True)
class EngineInfo:
    """Who answered: engine version, API endpoint and the GPU runtimes it offers."""

    version: str
    api_version: str
    endpoint: str
    runtimes: tuple[str, ...]
    os: str


@runtime_checkable
class ContainerRuntime(Protocol):
    """A container engine as nbcontainers needs it. Errors are ``nbcontainers.errors`` types."""

    def ping(self) -> EngineInfo: ...

    def image_info(self, ref: str) -> ImageInfo | None: ...

    def pull(self, ref: str, progress: ProgressCallback | None = None) -> ImageInfo: ...

    def push(self, ref: str, target: str, progress: ProgressCallback | None = None) -> str: ...

    def run(self, spec: ContainerSpec) -> str: ...

    def state(self, container_id: str) -> ContainerState | None: ...

    def wait(self, container_id: str, timeout: float) -> int | None: ...

    def signal(self, container_id: str, signum: int) -> None: ...

    def stop(self, container_id: str, timeout: float) -> None: ...

    def remove(self, container_id: str) -> None: ...

    def logs(self, container_id: str, tail: int = 50) -> str: ...

    def list(self, labels: Mapping[str, str | None]) -> Sequence[ContainerState]: ...
