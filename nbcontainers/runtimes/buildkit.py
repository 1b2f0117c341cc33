"""BuildKit builds through a Docker-compatible command line, for the engines that have one.

The Engine API's classic builder can't do ``RUN --mount=type=secret`` (the image sources and
every exported Dockerfile pass pip's settings that way), so builds go through a client that
drives BuildKit: the buildx plugin, or a pre-23 client's built-in BuildKit. Which one works
differs between machines (DESIGN.md, "Real Docker here"), so it is detected, never assumed.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from functools import lru_cache

from ..errors import BuildError
from .base import BuildCallback, BuildEvent, BuildRequest, ContainerRuntime, ImageInfo

__all__ = [
    "Builder",
    "build_argv",
    "build_flags",
    "build_tagged",
    "find_builder",
    "parse_progress",
    "run_build",
    "stop_client",
    "undo_partial_tag",
]

# `--progress=plain` prints "#7 [3/9] RUN pip install ..." when a step starts.
CANCEL_GRACE = 5.0  # seconds a cancelled client gets to end its build before SIGKILL
_STEP = re.compile(r"^#\d+ \[(?:[\w.-]+ )?(\d+)/(\d+)\] (.*)$")


@dataclass(frozen=True)
class Builder:
    """A command line that builds with BuildKit, and how it is described to the user."""

    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    description: str = ""


def _client_candidates() -> list[str]:
    found = [shutil.which("docker"), "/usr/bin/docker", "/usr/local/bin/docker"]
    unique: list[str] = []
    for c in found:
        if c and os.access(c, os.X_OK) and os.path.realpath(c) not in map(os.path.realpath, unique):
            unique.append(c)
    return unique


def _quiet(argv: list[str]) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=15, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None


@lru_cache(maxsize=1)
def find_builder() -> Builder:
    """Pick how to build: the buildx plugin, else a pre-23 client's built-in BuildKit."""
    candidates = _client_candidates()
    for client in candidates:
        done = _quiet([client, "buildx", "version"])
        if done is not None and done.returncode == 0:
            return Builder((client, "buildx", "build", "--load"), {}, f"{client} buildx")
    for client in candidates:
        done = _quiet([client, "version", "--format", "{{.Client.Version}}"])
        version = (done.stdout.strip() if done else "") or "0"
        leading = re.match(r"\d+", version)
        major = int(leading.group(0)) if leading else 0
        # Clients before 23.0 drive BuildKit themselves; later ones delegate to buildx.
        if 0 < major < 23:
            return Builder(
                (client, "build"),
                {"DOCKER_BUILDKIT": "1"},
                f"{client} {version} with its built-in BuildKit",
            )
    raise BuildError(
        "No Docker client here can build with BuildKit (the image sources use build "
        "secrets). Install the buildx plugin (Debian/Ubuntu: `apt-get install docker-buildx`, "
        "or `docker-buildx-plugin` from Docker's repository), or Debian's `docker.io` "
        "package whose client builds with BuildKit. "
        f"Clients found: {', '.join(candidates) or 'none'}."
    )


def build_argv(builder: Builder, request: BuildRequest) -> list[str]:
    """The command line for ``request``; secrets are passed by file, never by value."""
    argv = [*builder.argv, "--progress=plain", "-t", request.tag]
    if request.dockerfile != "Dockerfile":
        argv += ["-f", str(request.context / request.dockerfile)]
    return [*argv, *build_flags(request), str(request.context)]


def build_flags(request: BuildRequest) -> list[str]:
    """Secrets, labels, build args and ``--no-cache``: the flags `docker build` and
    `podman build` spell alike."""
    flags: list[str] = []
    for sid, path in request.secrets.items():
        flags += ["--secret", f"id={sid},src={path}"]
    for key, value in request.labels.items():
        flags += ["--label", f"{key}={value}"]
    for key, value in request.build_args.items():
        flags += ["--build-arg", f"{key}={value}"]
    if request.no_cache:
        flags.append("--no-cache")
    return flags


def parse_progress(line: str) -> BuildEvent:
    """One line of plain progress output as a build event."""
    match = _STEP.match(line)
    if match:
        return BuildEvent("step", line, int(match.group(1)), int(match.group(2)))
    return BuildEvent("log", line)


def run_build(
    argv: Sequence[str], env: dict[str, str], tag: str, on_event: BuildCallback | None
) -> None:
    """Run a build command, streaming its output as events; a failure carries the tail.

    Anything raised while it runs (a KeyboardInterrupt from an interrupted notebook cell, an
    exception from ``on_event``) cancels the build: the client is stopped, which ends the
    engine's build of its session, and the exception propagates once the client is gone.
    """
    say = on_event or (lambda _event: None)
    tail: deque[str] = deque(maxlen=40)
    try:
        proc = subprocess.Popen(
            list(argv),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            errors="replace",
        )
    except OSError as exc:
        raise BuildError(f"Could not run {argv[0]}: {exc}") from None
    assert proc.stdout is not None
    try:
        for raw in proc.stdout:
            line = raw.rstrip("\n")
            tail.append(line)
            say(parse_progress(line))
        proc.wait()
    except BaseException:
        stop_client(proc)
        raise
    finally:
        proc.stdout.close()
    if proc.returncode != 0:
        raise BuildError(
            f"Building {tag} failed (exit {proc.returncode}).",
            status=proc.returncode,
            log_tail="\n".join(tail),
        )


def stop_client(proc: subprocess.Popen[str], grace: float = CANCEL_GRACE) -> None:
    """Cancel a running build client: SIGINT first (the client then cancels its build
    session, and the engine stops the step's processes), SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def undo_partial_tag(
    runtime: ContainerRuntime, tag: str, retag: Callable[[str, str], None]
) -> Iterator[None]:
    """A build that fails or is cancelled leaves ``tag`` as it was: a tag that appeared (the
    engine exported just before the cancel reached it) is removed, one that moved is put back
    on its old image with ``retag(image_id, tag)``."""
    before = runtime.image_info(tag)
    try:
        yield
    except BaseException:
        # Cleanup must not mask why the build ended (an interrupt, the build's own error).
        with contextlib.suppress(Exception):
            after = runtime.image_info(tag)
            if after is not None and (before is None or after.id != before.id):
                runtime.remove_image(tag)
                if before is not None:
                    retag(before.id, tag)
        raise


def build_tagged(
    runtime: ContainerRuntime,
    argv: Sequence[str],
    env: dict[str, str],
    request: BuildRequest,
    on_event: BuildCallback | None,
    retag: Callable[[str, str], None],
    cleanup: AbstractContextManager[None] | None = None,
) -> ImageInfo:
    """Run a build command for ``request`` and return its image. On any failure or cancel,
    ``cleanup`` (entered around the build) ends what the engine still runs, then the tag is
    put back as it was (:func:`undo_partial_tag`)."""
    with undo_partial_tag(runtime, request.tag, retag), cleanup or contextlib.nullcontext():
        run_build(argv, env, request.tag, on_event)
    info = runtime.image_info(request.tag)
    if info is None:
        raise BuildError(f"The build of {request.tag} finished but the engine has no such image.")
    return info
