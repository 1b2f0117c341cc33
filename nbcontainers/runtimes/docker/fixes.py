"""What gets a Docker engine answering on this host, as a command to run: Docker Desktop on a
Mac or Windows, the user's rootless engine, the system engine under systemd or not, and the
package to install where none is (``DockerRuntime.advice("start", endpoint)``)."""

from __future__ import annotations

import os
import platform
import shutil

__all__ = ["daemon_installed", "start_fix", "start_fix_here"]


def daemon_installed() -> bool:
    """Whether a Docker engine (``dockerd``) is installed on this host."""
    return shutil.which("dockerd") is not None


def start_fix(*, system: str, systemd: bool, installed: bool, rootless: bool) -> str:
    """The command that starts (or installs and starts) the engine: ``system`` is
    ``platform.system()``, ``systemd`` whether PID 1 is systemd, ``installed`` whether dockerd
    is, ``rootless`` whether the engine looked for was the user's rootless one."""
    if rootless:  # the user's rootless Docker socket stopped answering
        return "systemctl --user start docker" if systemd else "dockerd-rootless.sh &"
    if system in ("Darwin", "Windows"):
        return "start Docker Desktop (or set DOCKER_HOST to an engine that runs)"
    start = "sudo systemctl start docker" if systemd else "sudo dockerd &"
    return start if installed else f"sudo apt-get install docker.io && {start}"


def start_fix_here(endpoint: str = "") -> str:
    """:func:`start_fix` for this host; ``endpoint`` is where the engine was looked for ("" for
    the system engine's default socket, else the user's rootless one)."""
    return start_fix(
        system=platform.system(),
        systemd=os.path.isdir("/run/systemd/system"),
        installed=daemon_installed(),
        rootless=bool(endpoint),
    )
