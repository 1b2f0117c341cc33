"""The fix for this host: what a command to run looks like here (a checkout or an installed
package, systemd or not, Docker installed or not), and why a user image can't be used. The
host's facts are gathered here; each engine's own commands come from its runtime package
(``runtimes/docker/fixes.py``, ``runtimes/podman/service.py``)."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path

from ..catalog.entries import CatalogImage, user_config_path
from ..runtimes.docker import fixes as docker_fixes
from ..runtimes.podman import service as podman_service

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
        docker_installed=docker_fixes.daemon_installed(),
        podman_installed="podman" not in podman_service.missing_tools(),
    )


def engine_fix(engine: str, host: HostFacts, endpoint: str | None = None) -> str:
    """The command that gets ``engine`` ("docker" or "podman") answering on this host, in the
    words of the runtime that knows it; ``endpoint`` is where DOCKER_HOST (or a rootless
    socket) pointed, None for the default."""
    if endpoint and os.environ.get("DOCKER_HOST") == endpoint:
        return f"start the engine DOCKER_HOST names ({endpoint}), or unset DOCKER_HOST"
    if engine == "podman":
        return podman_service.start_fix(systemd=host.systemd, installed=host.podman_installed)
    return docker_fixes.start_fix(
        system=host.system,
        systemd=host.systemd,
        installed=host.docker_installed,
        checkout=host.checkout,
        rootless=bool(endpoint) and engine == "docker",
    )


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
