"""What gets a Docker engine answering on this host, as a command to run: Docker Desktop on a
Mac or Windows, the user's rootless engine, the system engine under systemd or not, and the
package to install where none is. ``doctor`` states the host; the words are Docker's."""

from __future__ import annotations

import shutil
from pathlib import Path

__all__ = ["daemon_installed", "start_fix"]


def daemon_installed() -> bool:
    """Whether a Docker engine (``dockerd``) is installed on this host."""
    return shutil.which("dockerd") is not None


def start_fix(
    *, system: str, systemd: bool, installed: bool, checkout: Path | None, rootless: bool
) -> str:
    """The command that starts (or installs and starts) the engine: ``system`` is
    ``platform.system()``, ``systemd`` whether PID 1 is systemd, ``installed`` whether dockerd
    is, ``checkout`` nbcontainers' source checkout if it runs from one, ``rootless`` whether
    the engine looked for was the user's rootless one."""
    if rootless:  # the user's rootless Docker socket stopped answering
        return "systemctl --user start docker" if systemd else "dockerd-rootless.sh &"
    if system in ("Darwin", "Windows"):
        return "start Docker Desktop (or set DOCKER_HOST to an engine that runs)"
    if checkout is not None:
        # The checkout's own script installs and starts Debian's docker.io where none runs.
        return f"make -C {checkout} engine"
    start = "sudo systemctl start docker" if systemd else "sudo dockerd &"
    return start if installed else f"sudo apt-get install docker.io && {start}"
