"""Rootless Podman through its Docker-compatible API: each user's own engine, started on
demand, so that nobody needs the root-equivalent Docker socket.

The engine is ``podman system service`` listening on ``<runtime folder>/podman/podman.sock``
(the folder: ``nbcontainers.rundir``); when nothing answers there, a call starts it for the
user. It exits after ``NBCONTAINERS_PODMAN_IDLE`` seconds with no client (600 by default, 0:
never), as systemd's socket-activated ``podman.service`` does, so a hub does not keep an engine
per user who ever started a kernel; every call through :class:`PodmanRuntime` checks first and
starts it again when it has gone. Containers keep running without it (conmon holds them).

Containers run in the user's own user namespace: the container's root is the user on the
host, so a kernel runs as root *inside* (capabilities dropped, no new privileges) to write
files the user owns. What the engine cannot do here (limits on cgroup v1) is refused with
:class:`~nbcontainers.errors.Unsupported` naming the fix, never ignored; GPUs, which its
compatible API hands out only from Podman 5.4, nbcontainers gives from the host's CDI spec
itself before that (runtimes/cdi.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ...errors import BuildError, ContainerNotFound, RuntimeFailure
from ...rundir import user_runtime_dir
from .. import engine_facts
from ..base import (
    LIMITS,
    BuildCallback,
    BuildEvent,
    BuildRequest,
    ContainerSpec,
    ContainerState,
    ContainerStats,
    EngineFacts,
    ImageInfo,
)
from ..buildkit import build_flags, build_tagged
from ..docker.runtime import DockerRuntime, tagger
from ..docker.wire import device_requests
from .build import cancel_on_service
from .service import ensure_service, idle_timeout
from .storageconf import missing_image_message

__all__ = ["PodmanRuntime", "cdi_specs", "idle_timeout", "runtime_dir", "user_socket"]

LIST_TRIES = 4
BROKEN_SETTLE = 0.2  # seconds: how long a removal in flight may leave a record without storage
# Podman's answer for a container in its database whose storage is gone.
_NO_STORAGE = re.compile(r'getting container from store "([0-9a-f]{12,64})": container not known')
_DEPENDENTS = re.compile(r"has dependent containers which must be removed before it: ([0-9a-f, ]+)")
_ID = re.compile(r"[0-9a-f]{64}")
log = logging.getLogger(__name__)
CDI_DIRS = ("/etc/cdi", "/var/run/cdi")
# `podman build` prints "STEP 2/7: RUN pip install ..." when a step starts.
_STEP = re.compile(r"^STEP (\d+)/(\d+): (.*)$")
_CDI_API = (5, 4)  # the first Podman whose Docker-compatible API honours CDI device requests


def runtime_dir() -> Path:
    """The user's runtime folder, where only they (or root) can have made it: see
    ``nbcontainers.rundir``."""
    return user_runtime_dir()


def user_socket() -> Path:
    return runtime_dir() / "podman" / "podman.sock"


def cdi_specs() -> list[Path]:
    """NVIDIA CDI specs on this host (``nvidia-ctk cdi generate`` writes them)."""
    found: list[Path] = []
    for folder in CDI_DIRS:
        with contextlib.suppress(OSError):
            found += sorted(p for p in Path(folder).iterdir() if "nvidia" in p.name)
    return found


class PodmanRuntime(DockerRuntime):
    """The user's rootless Podman (or one at ``base_url``, which is then not started)."""

    engine_label = "Podman engine"

    def __init__(self, base_url: str | None = None) -> None:
        self._start = base_url is None
        super().__init__(base_url or f"unix://{user_socket()}")

    def _fix_hint(self, detail: str) -> str:
        return (
            "Is your Podman engine running? `podman system service --time=0 "
            f"{self.endpoint} &` starts it; `nbcontainers doctor` says what is wrong."
        )

    def _connect(self) -> None:
        if self._start:
            ensure_service(Path(self.endpoint.removeprefix("unix://")))

    @property
    def api(self) -> Any:
        """As Docker's, but the user's own engine is started again first when it has exited
        since (its idle timeout, a crash, a reboot): a server keeps this runtime for good, and
        its kernel starts, pool and gc all come through here. One connect to the socket."""
        if self._start and self._client is not None:
            self._connect()
        return super().api

    def _ask_facts(self) -> EngineFacts:
        with self._translate("ask the engine for its version"):
            version = self.api.version()
            host = self.api.get(f"{self.api.base_url}/v4.0.0/libpod/info").json()["host"]
        rootless = bool(host.get("security", {}).get("rootless"))
        controllers = set(host.get("cgroupControllers") or ())
        if rootless and host.get("cgroupVersion") != "v2":
            # cgroup v1 can't be delegated to a user: Podman would drop limits with a warning.
            limits = frozenset({"shm"})
        elif rootless:
            wanted = {"memory": "memory", "cpus": "cpu", "pids": "pids"}
            limits = frozenset({"shm"} | {k for k, c in wanted.items() if c in controllers})
        else:
            limits = frozenset(LIMITS)
        return EngineFacts(
            name="podman",
            version=str(version.get("Version", "?")),
            api_version=str(version.get("ApiVersion", "?")),
            endpoint=self.endpoint,
            os=str(host.get("distribution", {}).get("distribution", "?")),
            rootless=rootless,
            gpu_mode="cdi",
            limits=limits,
            runtimes=tuple(filter(None, [host.get("ociRuntime", {}).get("name")])),
            gpu_setup=""
            if cdi_specs()
            else "sudo nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml",
        )

    def builder(self) -> str:
        if shutil.which("podman") is None:
            raise BuildError("Building needs the podman command: `sudo apt-get install podman`.")
        return f"podman build (remote, {self.endpoint})"

    def _native_gpus(self) -> bool:
        """Podman 5.4+ applies a CDI spec itself when asked through its Docker-compatible API;
        4.x ignores the request silently, so nbcontainers applies the spec (runtimes/cdi.py)."""
        if not cdi_specs():
            return False
        version = engine_facts(self).version
        return tuple(int(n) for n in re.findall(r"\d+", version)[:2]) >= _CDI_API

    def _gpu_options(self, spec: ContainerSpec) -> dict[str, Any]:
        if spec.gpus is None:
            return {}
        ids = list(spec.gpus.device_ids) or ["all"]
        return device_requests(driver="cdi", device_ids=[f"nvidia.com/gpu={i}" for i in ids])

    def list(self, labels: Mapping[str, str | None]) -> Sequence[ContainerState]:
        """As Docker's, asked again when Podman's API fails the whole list over one container
        it cannot read ("getting container from store …: container not known"): one that
        vanished while Podman listed (a kernel start and a restart healing one user's
        leftovers at once), or a record whose storage is gone for good (see :meth:`state`)."""
        for attempt in range(LIST_TRIES):
            try:
                return super().list(labels)
            except RuntimeFailure as exc:
                if attempt == LIST_TRIES - 1 or not self._forget_broken(exc):
                    raise
        raise AssertionError("unreachable")

    def state(self, container_id: str) -> ContainerState | None:
        """As Docker's; a container whose record outlived its storage is removed and reported
        gone (None), as it is for every purpose: it can neither run nor be inspected."""
        try:
            return super().state(container_id)
        except RuntimeFailure as exc:
            if not self._forget_broken(exc):
                raise
        return super().state(container_id)

    def _forget_broken(self, exc: RuntimeFailure) -> bool:
        """Remove the container ``exc`` says Podman cannot find in its storage, once it is
        still so a moment later; return whether ``exc`` was that. An engine killed while it
        removed a container (between deleting its storage and its record: an admin ending the
        user's processes, the OOM killer) leaves such a record, and from then on Podman fails
        every list and every inspect of it, so every kernel start of that user, until the
        record goes. A removal in flight leaves the same state for a moment: hence the wait,
        and removing is what that removal was doing anyway."""
        found = _NO_STORAGE.search(str(exc))
        if found is None:
            return False
        time.sleep(BROKEN_SETTLE)
        try:
            super().state(found[1])
        except RuntimeFailure as again:
            if _NO_STORAGE.search(str(again)) is None:
                raise
            log.warning("removing container %s: its storage is gone (%s)", found[1][:12], again)
            self._remove_broken(found[1])
        return True

    def _remove_broken(self, container_id: str) -> None:
        """Remove a record without storage, and first the ended containers joined to it (a
        network holder's kernels), which Podman otherwise names as "dependent containers".
        A running one is never touched: then the user is told what to stop."""
        try:
            self.remove(container_id)
            return
        except RuntimeFailure as refused:
            joined = _DEPENDENTS.search(str(refused))
            if joined is None:
                raise
        states = [super(PodmanRuntime, self).state(i) for i in _ID.findall(joined[1])]
        running = [s.name for s in states if s is not None and s.status == "running"]
        if running:
            raise RuntimeFailure(
                f"Your container {container_id[:12]} lost its storage (its engine was killed "
                f"while removing it), and running containers are joined to it: "
                f"{', '.join(running)}. Stop them (`podman stop NAME`), then try again."
            )
        for state in states:
            if state is not None:
                self.remove(state.id)
        self.remove(container_id)

    def image_info(self, ref: str) -> ImageInfo | None:
        info = super().image_info(ref)
        if info is None:
            return None
        # Podman qualifies short names ("localhost/nbcontainers/python:…"); callers use ours.
        short = tuple(re.sub(r"^(localhost|docker\.io)/", "", t) for t in info.tags)
        return replace(info, tags=short)

    def missing_image_advice(self, ref: str, kernel: str) -> str | None:
        """On a hub the catalog images come from the admin's shared store (the user's
        ``storage.conf`` names it, or says the admin loads the user's own storage): the user
        is sent to the admin, never to a build of gigabytes in their own storage."""
        from .. import engine_facts  # the one caching rule for an engine's facts

        return missing_image_message(ref, kernel) if engine_facts(self).rootless else None

    def advice(self, topic: str, subject: str) -> str:
        if topic == "start":  # the user's own engine: installed, its socket unit, or by hand
            from .service import start_fix_here

            return start_fix_here()
        return super().advice(topic, subject)

    def stats(self, container_id: str) -> ContainerStats:
        """As Docker's, but unknown where the engine cannot account a container: rootless on
        cgroup v1 (``podman stats`` refuses there), where its API answers with the figures of
        a cgroup that is not the container's (1.2 GiB used by an idle ``sleep``, 0% CPU)."""
        stats = super().stats(container_id)
        limits = engine_facts(self).limits  # cached: a poll samples every kernel
        return replace(
            stats,
            cpu_percent=stats.cpu_percent if "cpus" in limits else None,
            memory_used=stats.memory_used if "memory" in limits else None,
        )

    def logs(self, container_id: str, tail: int = 50) -> str:
        """The last ``tail`` lines. Podman 4.3 counts ``tail`` in its log file's entries, which
        split long lines into 8 KiB parts, and answers a ``tail`` above their number with the
        last entry alone (a 40 KB line came back as its last 4 bytes): ask for all, cut here."""
        try:
            with self._translate(f"read logs of container {container_id[:12]}"):
                raw = self.api.logs(container_id, stdout=True, stderr=True, tail="all")
        except ContainerNotFound:
            return ""
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        lines = text.splitlines(keepends=True)
        return "".join(lines[-tail:]) if tail > 0 else ""

    def build(self, request: BuildRequest, on_event: BuildCallback | None = None) -> ImageInfo:
        """``podman --remote build`` against this engine: its own store, BuildKit-style secrets."""
        self.builder()  # says what to install when podman is missing
        argv = ["podman", "--remote", "--url", self.endpoint, "build", "-t", request.tag]
        argv += ["-f", str(request.context / request.dockerfile)]
        argv += build_flags(request)
        argv.append(str(request.context))
        say = on_event or (lambda _event: None)
        # The service builds on when the client stops: a cancel ends the build there too.
        cancel = cancel_on_service(self.api, local=self.endpoint.startswith("unix://"))
        return build_tagged(
            self,
            argv,
            dict(os.environ),
            request,
            lambda e: say(_podman_event(e)),
            tagger(self),
            cancel,
        )


def _podman_event(event: BuildEvent) -> BuildEvent:
    match = _STEP.match(event.text)
    if match:
        return replace(event, kind="step", step=int(match.group(1)), total=int(match.group(2)))
    return event
