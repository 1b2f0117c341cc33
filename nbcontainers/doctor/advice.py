"""The fix for this host: what a command to run looks like here (a checkout or an installed
package, systemd or not, Docker installed or not), and why a user image can't be used."""

from __future__ import annotations

import os
import platform
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..catalog.entries import CatalogImage, user_config_path

__all__ = ["HostFacts", "engine_fix", "host_facts", "image_problem"]


@dataclass(frozen=True)
class HostFacts:
    """What the advice depends on, gathered once so tests can state any host."""

    checkout: Path | None  # the source checkout nbcontainers runs from, if it runs from one
    system: str  # platform.system(): "Linux", "Darwin", "Windows"
    systemd: bool  # PID 1 is systemd, so `systemctl` starts services
    docker_installed: bool  # a Docker engine (dockerd) is installed on this host
    podman_installed: bool


def _checkout() -> Path | None:
    root = Path(__file__).resolve().parent.parent.parent
    # An editable install runs from the checkout: its Makefile and scripts are there to use.
    if (root / "Makefile").is_file() and (root / "scripts" / "ensure-docker.sh").is_file():
        return root
    return None


def host_facts() -> HostFacts:
    return HostFacts(
        checkout=_checkout(),
        system=platform.system(),
        systemd=os.path.isdir("/run/systemd/system"),
        docker_installed=shutil.which("dockerd") is not None,
        podman_installed=shutil.which("podman") is not None,
    )


def engine_fix(engine: str, host: HostFacts, endpoint: str | None = None) -> str:
    """The command that gets ``engine`` ("docker" or "podman") answering on this host;
    ``endpoint`` is where DOCKER_HOST (or a rootless socket) pointed, None for the default."""
    if endpoint and os.environ.get("DOCKER_HOST") == endpoint:
        return f"start the engine DOCKER_HOST names ({endpoint}), or unset DOCKER_HOST"
    if endpoint and engine == "docker":  # the user's rootless Docker socket stopped answering
        return "systemctl --user start docker" if host.systemd else "dockerd-rootless.sh &"
    if engine == "podman":
        if not host.podman_installed:
            return "sudo apt-get install podman uidmap slirp4netns catatonit"
        if host.systemd:
            return "systemctl --user enable --now podman.socket"
        return "podman system service --time=0 &"
    if host.system == "Darwin" or host.system == "Windows":
        return "start Docker Desktop (or set DOCKER_HOST to an engine that runs)"
    if host.checkout is not None:
        # The checkout's own script installs and starts Debian's docker.io where none runs.
        return f"make -C {host.checkout} engine"
    if not host.docker_installed:
        start = "sudo systemctl start docker" if host.systemd else "sudo dockerd &"
        return f"sudo apt-get install docker.io && {start}"
    return "sudo systemctl start docker" if host.systemd else "sudo dockerd &"


def image_problem(image: CatalogImage) -> str:
    """Why a user image can be neither built nor pulled as declared ("" when it can)."""
    if not image.user_defined or image.source is None or image.buildable:
        return ""
    where = user_config_path()
    if not image.source.is_dir():
        return (
            f"its build folder {image.source} does not exist: create it with a Dockerfile, "
            f"or fix 'build' for {image.name!r} in {where}"
        )
    return (
        f"its build folder {image.source} has no Dockerfile: add one, or fix 'build' for "
        f"{image.name!r} in {where}"
    )
