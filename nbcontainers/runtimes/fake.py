"""An in-memory container engine for fast tests: the whole runtime contract, no processes.

Containers do not execute anything real. A command of the form ``sh -c "SCRIPT"`` is
interpreted for the few statements the contract suite needs (``echo TEXT``, ``exit N``,
``sleep …``); any other command "runs" until it is stopped, signalled or told to exit with
:meth:`FakeRuntime.exit` (a test's way of making a kernel crash). It enforces what a real
engine enforces: images must exist, names are unique, a joined network namespace must be
running, limits it is told it cannot enforce are refused.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import shlex
import signal as signal_module
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from ..errors import (
    BuildError,
    ContainerConflict,
    ContainerNotFound,
    EngineUnavailable,
    ImageMissing,
    RuntimeFailure,
)
from .base import (
    LIMITS,
    BuildCallback,
    BuildEvent,
    BuildRequest,
    ContainerSpec,
    ContainerState,
    ContainerStats,
    EngineFacts,
    ExecResult,
    ImageInfo,
    ProgressCallback,
    refuse_unenforceable,
)

__all__ = ["FakeRuntime"]

HOST_MEMORY = 8 << 30
_INSTRUCTION = re.compile(r"^\s*(([A-Z]+)\s.*)$", re.M)
_LABEL = re.compile(r'^\s*LABEL\s+([\w.-]+)="?([^"\n]*)"?', re.M)


@dataclass
class _Container:
    spec: ContainerSpec
    state: ContainerState
    log: list[str] = field(default_factory=list)


class FakeRuntime:
    """A :class:`~nbcontainers.runtimes.base.ContainerRuntime` held in memory.

    ``images`` are present from the start; ``registry`` holds what :meth:`pull` can fetch
    and :meth:`push` writes. ``limits`` and ``rootless`` set the engine's facts. ``specs``
    records every spec run, ``builds`` every build request, for tests to assert on.
    """

    def __init__(
        self,
        images: Iterable[str] = (),
        *,
        registry: Iterable[str] = (),
        limits: Iterable[str] = LIMITS,
        rootless: bool = False,
        available: bool = True,
    ) -> None:
        self._lock = threading.Condition()
        self._images: dict[str, ImageInfo] = {}
        self._containers: dict[str, _Container] = {}
        self._ids = itertools.count(1)
        self.registry: set[str] = set(registry)
        self.limits = frozenset(limits)
        self.rootless = rootless
        self.available = available  # False: every call raises EngineUnavailable
        self.specs: list[ContainerSpec] = []
        self.builds: list[BuildRequest] = []
        for ref in images:
            self.add_image(ref)

    # -- test hooks -------------------------------------------------------------------------

    def add_image(self, ref: str, labels: Mapping[str, str] | None = None) -> ImageInfo:
        digest = hashlib.sha256(ref.encode()).hexdigest()
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        info = ImageInfo(f"sha256:{digest}", (ref,), (), dict(labels or {}), 1 << 20, created)
        with self._lock:
            self._images[ref] = info
        return info

    def exit(self, container_id: str, code: int, oom: bool = False, log: str = "") -> None:
        """Make a running container exit on its own (a crash, an OOM kill)."""
        with self._lock:
            box = self._get(container_id)
            if log:
                box.log.extend(log.splitlines())
            self._finish(box, code, oom=oom)

    # -- engine and images ------------------------------------------------------------------

    def _check(self) -> None:
        if not self.available:
            raise EngineUnavailable("Cannot reach the fake engine (set available=True).")

    def ping(self) -> EngineFacts:
        self._check()
        return EngineFacts(
            name="fake",
            version="1.0",
            api_version="1.0",
            endpoint="memory://",
            os="fake",
            rootless=self.rootless,
            gpu_mode="none",
            limits=self.limits,
        )

    def image_info(self, ref: str) -> ImageInfo | None:
        self._check()
        with self._lock:
            return self._images.get(ref)

    def pull(self, ref: str, progress: ProgressCallback | None = None) -> ImageInfo:
        self._check()
        if ref not in self.registry:
            raise ImageMissing(f"pull {ref}: no registry has it (fake registry: {self.registry})")
        if progress:
            progress(f"pulling {ref}", 1, 1)
        return self.add_image(ref)

    def push(self, ref: str, target: str, progress: ProgressCallback | None = None) -> str:
        info = self.image_info(ref)
        if info is None:
            raise ImageMissing(f"push {target}: no local image {ref}")
        if "/" not in target:
            raise RuntimeFailure(f"push {target}: not a registry address (registry/repo:tag)")
        self.registry.add(target)
        if progress:
            progress(f"pushing {target}", 1, 1)
        return info.id

    def build(self, request: BuildRequest, on_event: BuildCallback | None = None) -> ImageInfo:
        self._check()
        say = on_event or (lambda _event: None)
        dockerfile = request.context / request.dockerfile
        if not dockerfile.is_file():
            raise BuildError(
                f"Building {request.tag} failed: no {request.dockerfile} in the context."
            )
        for sid, path in request.secrets.items():
            if not path.is_file():
                raise BuildError(
                    f"Building {request.tag} failed: secret {sid!r} file {path} is missing."
                )
        text = dockerfile.read_text()
        steps = [line.strip() for line, _ in _INSTRUCTION.findall(text)]
        if not steps or steps[0].split()[0] not in ("FROM", "ARG"):
            raise BuildError(f"Building {request.tag} failed: the Dockerfile has no FROM.")
        # An exception from ``say`` (a cancelled cell) ends the build before anything is tagged.
        for i, instruction in enumerate(steps, 1):
            say(BuildEvent("step", instruction, i, len(steps)))
        self.builds.append(request)
        labels = {**dict(_LABEL.findall(text)), **request.labels}
        return self.add_image(request.tag, labels)

    def builder(self) -> str:
        return "in-memory"

    def remove_image(self, ref: str) -> None:
        self._check()
        with self._lock:
            running = {b.state.image_id for b in self._containers.values() if b.state.running}
            for tag in _tags_to_remove(self._images, ref, running):
                del self._images[tag]

    def images(self, labels: _Labels = None, repository: str | None = None) -> list[ImageInfo]:
        self._check()
        with self._lock:
            return _matching(self._images.values(), labels, repository)

    def advice(self, topic: str, subject: str) -> str:
        return f"fake-engine {topic} {subject}" if topic in ("locate", "node") else ""

    # -- containers -------------------------------------------------------------------------

    def run(self, spec: ContainerSpec) -> str:
        self._check()
        with self._lock:
            if spec.image not in self._images:
                raise ImageMissing(f"start a container from {spec.image}: no such image")
            refuse_unenforceable(spec, self.limits, "fake engine")
            if spec.name and any(b.state.name == spec.name for b in self._containers.values()):
                raise ContainerConflict(f"The container name {spec.name!r} is already in use.")
            mode = spec.network_mode or ""
            if mode.startswith("container:"):
                joined = self._find(mode.split(":", 1)[1])
                if joined is None or joined.state.status != "running":
                    raise ContainerNotFound(f"Cannot join the network of {mode}: not running.")
            cid = hashlib.sha256(f"fake-{next(self._ids)}".encode()).hexdigest()
            state = ContainerState(
                id=cid,
                name=spec.name or f"fake_{cid[:8]}",
                image=spec.image,
                status="running",
                exit_code=None,
                oom_killed=False,
                labels=dict(spec.labels),
                started_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                image_id=self._images[spec.image].id,
            )
            box = _Container(spec, state)
            self._containers[cid] = box
            self.specs.append(spec)
            self._interpret(box)
            return cid

    def _interpret(self, box: _Container) -> None:
        """Play ``sh -c SCRIPT``: echo lines, then exit or keep running."""
        command = box.spec.command
        if len(command) != 3 or command[0] not in ("sh", "/bin/sh") or command[1] != "-c":
            return
        for statement in (s.strip() for s in command[2].split(";")):
            words = shlex.split(statement) if statement else []
            if not words:
                continue
            if words[0] == "echo":
                box.log.append(" ".join(words[1:]))
            elif words[0] == "exit":
                self._finish(box, int(words[1]) if len(words) > 1 else 0)
                return
            elif words[0] == "sleep":
                return  # sleeps until stopped
        self._finish(box, 0)

    def _find(self, key: str) -> _Container | None:
        box = self._containers.get(key)
        if box is not None:
            return box
        for candidate in self._containers.values():
            if candidate.state.name == key or (
                len(key) >= 12 and candidate.state.id.startswith(key)
            ):
                return candidate
        return None

    def _get(self, key: str) -> _Container:
        box = self._find(key)
        if box is None:
            raise ContainerNotFound(f"No such container: {key}")
        return box

    def _finish(self, box: _Container, code: int, oom: bool = False) -> None:
        if box.state.status == "exited":
            return
        box.state = replace(box.state, status="exited", exit_code=code, oom_killed=oom)
        self._lock.notify_all()

    def state(self, container_id: str) -> ContainerState | None:
        self._check()
        with self._lock:
            box = self._find(container_id)
            return box.state if box else None

    def wait(self, container_id: str, timeout: float) -> int | None:
        self._check()
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                box = self._find(container_id)
                if box is None:
                    return None
                if box.state.exit_code is not None:
                    return box.state.exit_code
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._lock.wait(left)

    def signal(self, container_id: str, signum: int) -> None:
        self._check()
        with self._lock:
            box = self._get(container_id)
            if box.state.status != "running":
                raise RuntimeFailure(f"Container {container_id[:12]} is not running.")
            # A kernel survives SIGINT (it interrupts the cell); other signals end it.
            if signum != signal_module.SIGINT:
                self._finish(box, 128 + signum)

    def stop(self, container_id: str, timeout: float) -> None:
        self._check()
        with self._lock:
            box = self._find(container_id)
            if box is not None:
                self._finish(box, 128 + signal_module.SIGTERM)

    def remove(self, container_id: str) -> None:
        self._check()
        with self._lock:
            box = self._find(container_id)
            if box is not None:
                self._finish(box, 128 + signal_module.SIGKILL)
                del self._containers[box.state.id]

    def logs(self, container_id: str, tail: int = 50) -> str:
        self._check()
        with self._lock:
            box = self._find(container_id)
            lines = box.log[-tail:] if box and tail > 0 else []
        return "".join(line + "\n" for line in lines)

    def exec(
        self, container_id: str, command: Sequence[str], user: str | None = None
    ) -> ExecResult:
        self._check()
        with self._lock:
            box = self._get(container_id)
            if box.state.status != "running":
                raise RuntimeFailure(f"Container {container_id[:12]} is not running.")
            who = user or box.spec.user or "0"
        if not command:
            raise RuntimeFailure("exec: no command given")
        if command[0] == "echo":
            return ExecResult(0, " ".join(command[1:]) + "\n")
        if list(command) == ["id", "-u"]:
            return ExecResult(0, who.split(":")[0] + "\n")
        if command[0] == "true":
            return ExecResult(0, "")
        if command[0] == "false":
            return ExecResult(1, "")
        return ExecResult(127, f"{command[0]}: command not found (fake runtime)\n")

    def stats(self, container_id: str) -> ContainerStats:
        self._check()
        with self._lock:
            box = self._get(container_id)
        limit = _bytes(box.spec.mem_limit) if box.spec.mem_limit else HOST_MEMORY
        used = (1 << 20) if box.state.status == "running" else 0
        return ContainerStats(cpu_percent=0.0, memory_used=used, memory_limit=limit)

    def list(self, labels: Mapping[str, str | None]) -> Sequence[ContainerState]:
        self._check()
        with self._lock:
            return [
                b.state
                for b in self._containers.values()
                if all(
                    k in b.state.labels and (v is None or b.state.labels[k] == v)
                    for k, v in labels.items()
                )
            ]


_Labels = Mapping[str, "str | None"] | None


def _tags_to_remove(images: Mapping[str, ImageInfo], ref: str, running: set[str]) -> list[str]:
    """As Docker's forced remove: a tag just goes; by id, a running container's image is
    refused and otherwise every tag goes with it."""
    info = images.get(ref) or next((i for i in images.values() if i.id == ref), None)
    if info is None:
        return []
    if ref == info.id and info.id in running:
        raise ContainerConflict(f"remove image {ref}: a running container uses it")
    return [tag for tag, i in images.items() if ref in (tag, i.id)]


def _matching(
    images: Iterable[ImageInfo], labels: _Labels, repository: str | None
) -> list[ImageInfo]:
    return [
        i
        for i in {i.id: i for i in images}.values()
        if all(k in i.labels and v in (None, i.labels[k]) for k, v in (labels or {}).items())
        and (repository is None or any(t.rpartition(":")[0] == repository for t in i.tags))
    ]


def _bytes(size: str) -> int:
    """Docker's size strings: "512m", "2g", "1024"."""
    match = re.fullmatch(r"(\d+)([bkmg]?)b?", size.strip().lower())
    if not match:
        raise RuntimeFailure(f"Invalid size {size!r}: use a number with b, k, m or g.")
    scale = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[match.group(2)]
    return int(match.group(1)) * scale
