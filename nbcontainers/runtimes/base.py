"""The seam between nbcontainers and a container engine: value types and the Protocol.

Every engine (Docker today; rootless Podman, Swarm and Kubernetes next) is one module in
this package that implements :class:`ContainerRuntime` and is registered under the entry
point group ``nbcontainers.runtimes``. Callers outside ``runtimes/`` see only these types
and the typed errors of :mod:`nbcontainers.errors`: never an engine's CLI, JSON or error
text. ``tests/runtimes/`` holds the contract every runtime must pass.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from ..errors import ConfigError, Unsupported

__all__ = [
    "GPU_MODES",
    "LIMITS",
    "BuildCallback",
    "BuildEvent",
    "BuildRequest",
    "ContainerRuntime",
    "ContainerSpec",
    "ContainerState",
    "ContainerStats",
    "EngineFacts",
    "ExecResult",
    "ExplainsMissingImages",
    "GPURequest",
    "ImageInfo",
    "Mount",
    "Placement",
    "ProgressCallback",
    "missing_image_advice",
    "parse_placement",
    "placements",
    "refuse_unenforceable",
]

# Called with (what, done, total) while pulling or pushing; total is None when unknown.
ProgressCallback = Callable[[str, int, "int | None"], None]

# How an engine hands GPUs to a container: Docker's device requests, CDI device names
# (Podman), Swarm's generic resources, Kubernetes' extended resources, or not at all.
GPU_MODES = ("device-requests", "cdi", "generic-resources", "extended-resources", "none")

# The ContainerSpec limits an engine may or may not be able to enforce (a rootless engine on
# cgroup v1 can enforce none of them); a spec asking for one it cannot is refused with
# ``Unsupported``, never run silently without it.
LIMITS = ("memory", "cpus", "pids", "shm")


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
class Placement:
    """One rule for where a cluster engine may run a container: the node's hostname (``label``
    None) or its label ``label`` is ``value`` (``equal``) or is not (``equal=False``). Every
    rule of a spec must hold. ``str()`` gives the form users write (see :func:`parse_placement`)."""

    value: str
    label: str | None = None
    equal: bool = True

    def __str__(self) -> str:
        subject = "node.hostname" if self.label is None else f"node.labels.{self.label}"
        return f"{subject}{'==' if self.equal else '!='}{self.value}"


# What users write (Swarm's constraint syntax, kept because it is what they already know):
# node.hostname==NAME or node.labels.KEY==VALUE, with != for "not". Nothing else: node.role,
# node.id and engine.labels mean nothing to another engine.
_PLACEMENT = re.compile(
    r"node\.(?:(?P<hostname>hostname)|labels\.(?P<label>[A-Za-z0-9_][-A-Za-z0-9_./]*))"
    r"\s*(?P<op>==|!=)\s*(?P<value>[^\s=!,]+)"
)


def parse_placement(text: str) -> Placement:
    """``node.hostname==n1``, ``node.labels.gpu==true`` or either with ``!=`` as a
    :class:`Placement`; ``ConfigError`` naming the accepted forms for anything else."""
    match = _PLACEMENT.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ConfigError(
            f"Placement {text!r} is not understood. Write node.hostname==NODE or "
            "node.labels.KEY==VALUE (!= for 'not'); give several rules as several items, "
            "all of which must hold."
        )
    return Placement(value=match["value"], label=match["label"], equal=match["op"] == "==")


def placements(rules: Iterable[str | Placement]) -> tuple[Placement, ...]:
    """``rules`` as :class:`Placement` values, parsing the ones written as text."""
    return tuple(r if isinstance(r, Placement) else parse_placement(r) for r in rules)


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
    # None: the engine's default network; "none", "host", "bridge", or "container:<id>"
    # to join another container's network namespace.
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
    # Where a cluster engine may place the container (every rule holds); an engine that
    # can't honour placement (``EngineFacts.placement`` False) refuses a non-empty one.
    placement: tuple[Placement, ...] = ()
    # Device nodes as ``host:container:permissions``: only what a runtime derives from a CDI
    # spec for ``gpus`` (runtimes/cdi.py); users' settings never reach this field.
    devices: tuple[str, ...] = ()

    def limits(self) -> frozenset[str]:
        """The :data:`LIMITS` this spec asks the engine to enforce."""
        asked = {
            "memory": self.mem_limit,
            "cpus": self.nano_cpus,
            "pids": self.pids_limit,
            "shm": self.shm_size,
        }
        return frozenset(name for name, value in asked.items() if value)


@dataclass(frozen=True)
class ContainerState:
    """One container as the engine reports it."""

    id: str
    name: str
    image: str
    status: str  # created, running, paused, restarting, removing, exited, dead
    exit_code: int | None
    oom_killed: bool
    labels: Mapping[str, str]
    started_at: str = ""
    error: str = ""
    # Where the container's published ports are reachable from this server: "" means this
    # host (loopback); a cluster engine names the node or pod address.
    address: str = ""
    ports: Mapping[int, int] = field(default_factory=dict)  # container port -> reachable port
    node: str = ""  # the cluster node it runs on (a hostname); "" for a single-host engine
    image_id: str = ""  # the image it was made from, by id ("" where the engine can't tell)

    @property
    def running(self) -> bool:
        return self.status in ("running", "restarting", "paused", "created")


@dataclass(frozen=True)
class ContainerStats:
    """One sample of a container's resource use; None where the engine can't tell."""

    cpu_percent: float | None  # of one CPU: 200.0 is two CPUs busy
    memory_used: int | None  # bytes
    memory_limit: int | None  # bytes; the host's memory when the container has no limit


@dataclass(frozen=True)
class ExecResult:
    """What a command run inside a container returned; ``output`` is stdout and stderr."""

    exit_code: int
    output: str


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
class EngineFacts:
    """Who answered and what it can do."""

    name: str  # "docker", "podman", "fake", ...
    version: str
    api_version: str
    endpoint: str
    os: str
    rootless: bool
    gpu_mode: str  # one of GPU_MODES
    limits: frozenset[str]  # the LIMITS it enforces
    runtimes: tuple[str, ...] = ()  # OCI runtimes offered, e.g. ("nvidia", "runc")
    # What to run so the engine can hand GPUs to containers; "" when it already can.
    gpu_setup: str = ""
    # True when containers may run on another host than this server (Swarm, Kubernetes):
    # kernels then listen on TCP and their channels are encrypted with CurveZMQ.
    remote: bool = False
    # True when it honours ContainerSpec.placement (Swarm, Kubernetes); an engine that runs
    # everything on one host refuses a spec with placement rather than ignore it.
    placement: bool = False


@dataclass(frozen=True)
class BuildRequest:
    """One image build. ``secrets`` maps a BuildKit secret id to a file that is mounted for
    ``RUN --mount=type=secret,id=…`` and never written into a layer."""

    context: Path
    tag: str
    dockerfile: str = "Dockerfile"  # relative to the context
    build_args: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    secrets: Mapping[str, Path] = field(default_factory=dict)
    no_cache: bool = False


@dataclass(frozen=True)
class BuildEvent:
    """Progress of a build. ``kind`` is "step" when a build step starts (with its position
    when the engine says so), "log" for any other line of output."""

    kind: str
    text: str
    step: int | None = None
    total: int | None = None


BuildCallback = Callable[[BuildEvent], None]


@runtime_checkable
class ContainerRuntime(Protocol):
    """A container engine as nbcontainers needs it.

    Errors are :mod:`nbcontainers.errors` types: ``EngineUnavailable`` when the engine does
    not answer, ``ImageMissing`` for an absent image, ``ContainerConflict`` when a name is
    taken, ``ContainerNotFound`` where an operation needs a container that is gone,
    ``Unsupported`` for a request the engine cannot honour, ``BuildError`` for a failed
    build and ``RuntimeFailure`` for any other refusal (``signal`` or ``exec`` on a container
    that is not running, say). ``stop`` and ``remove`` are idempotent: a container that is
    already gone is not an error.
    """

    def ping(self) -> EngineFacts:
        """Check the engine answers (within seconds) and return its facts."""
        ...

    # -- images -----------------------------------------------------------------------------

    def image_info(self, ref: str) -> ImageInfo | None: ...

    def pull(self, ref: str, progress: ProgressCallback | None = None) -> ImageInfo: ...

    def push(self, ref: str, target: str, progress: ProgressCallback | None = None) -> str:
        """Tag ``ref`` as ``target`` and push it; return the pushed digest (or "")."""
        ...

    def build(self, request: BuildRequest, on_event: BuildCallback | None = None) -> ImageInfo:
        """Build and tag ``request.tag``; stream progress to ``on_event``."""
        ...

    def remove_image(self, ref: str) -> None:
        """Remove a local image; a missing one is not an error."""
        ...

    def images(
        self, labels: Mapping[str, str | None] | None = None, repository: str | None = None
    ) -> list[ImageInfo]:
        """Local images (untagged ones too) with every label given (a None value matches
        any) and, when ``repository`` is given, a tag in it (``nbcontainers/python``).
        Optional for a third-party runtime: callers check ``hasattr(runtime, "images")``;
        a cluster, whose nodes hold the images, raises ``Unsupported``."""
        ...

    def builder(self) -> str:
        """How :meth:`build` builds here, for the user; ``BuildError`` with the fix when it
        can't. Apart from ``ping`` because finding out may cost a few processes."""
        ...

    # -- containers -------------------------------------------------------------------------

    def run(self, spec: ContainerSpec) -> str:
        """Create and start a container; return its id. Nothing is left behind on failure."""
        ...

    def state(self, container_id: str) -> ContainerState | None:
        """The container by id or name, or None when there is none."""
        ...

    def wait(self, container_id: str, timeout: float) -> int | None:
        """Exit code once the container exits, or None if it still runs after ``timeout``
        (or is gone)."""
        ...

    def signal(self, container_id: str, signum: int) -> None: ...

    def stop(self, container_id: str, timeout: float) -> None: ...

    def remove(self, container_id: str) -> None: ...

    def logs(self, container_id: str, tail: int = 50) -> str: ...

    def exec(
        self, container_id: str, command: Sequence[str], user: str | None = None
    ) -> ExecResult:
        """Run ``command`` in a running container and wait for it."""
        ...

    def stats(self, container_id: str) -> ContainerStats: ...

    def list(self, labels: Mapping[str, str | None]) -> Sequence[ContainerState]:
        """Containers (running or not) with every label given; a None value matches any."""
        ...

    # -- the user's next step ---------------------------------------------------------------

    def advice(self, topic: str, subject: str) -> str:
        """What the user can run to look into ``subject``, in this engine's words, as a phrase
        to put in a message: topic ``"locate"``, where container ``subject`` runs and what
        became of it (Swarm: its service's tasks, listed on a manager); topic ``"node"``, how
        to check node ``subject``'s address; topic ``"start"``, the command that gets the
        engine answering on this host (``subject``: the endpoint it was looked for at, "" for
        its default). "" for a topic it doesn't know."""
        ...


def refuse_unenforceable(
    spec: ContainerSpec, limits: frozenset[str], engine: str, placement: bool = False
) -> None:
    """What every runtime does before it runs ``spec``: a limit it can't enforce, or placement
    where it can't honour placement (``placement`` False), is an ``Unsupported`` that names
    the fix, never a container started without it."""
    if spec.placement and not placement:
        raise Unsupported(
            f"This {engine} runs every container on one host, so it can't honour placement "
            f"({', '.join(map(str, spec.placement))}). Use runtime 'swarm' or 'kubernetes', "
            "or remove 'placement'."
        )
    refused = spec.limits() - limits
    if refused:
        raise Unsupported(
            f"This {engine} can't enforce {', '.join(sorted(refused))} limits: it is rootless "
            "and the host gives users no cgroup v2 controllers. Ask your admin to boot with "
            "cgroup v2 and delegate memory, cpu and pids to users (systemd `Delegate=yes` for "
            "user@.service), or drop the limit."
        )


@runtime_checkable
class ExplainsMissingImages(Protocol):
    """Optional for a runtime: what its engine can say about an image it lacks beyond "build
    or pull it" (rootless Podman on a hub: the admin's shared store is where catalog images
    come from). Callers use :func:`missing_image_advice`."""

    def missing_image_advice(self, ref: str, kernel: str) -> str | None:
        """The message for a user whose engine lacks ``ref`` (wanted by ``kernel``), or
        ``None`` where the usual fix applies."""
        ...


def missing_image_advice(runtime: ContainerRuntime, ref: str, kernel: str) -> str | None:
    """``runtime``'s own message for a missing ``ref``, ``None`` where it has none."""
    if isinstance(runtime, ExplainsMissingImages):
        return runtime.missing_image_advice(ref, kernel)
    return None
