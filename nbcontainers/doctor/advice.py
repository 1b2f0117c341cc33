"""The fix for this host: what gets the engine answering (a checkout's own ``make engine``, else
the command the runtime that knows the engine names: ``runtime.advice("start", endpoint)``),
and why a user image can't be used."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path

from ..catalog.entries import CatalogImage, user_config_path
from ..runtimes.base import ContainerRuntime

__all__ = ["HostFacts", "engine_fix", "host_facts", "image_problem"]

_DESKTOP = ("Darwin", "Windows")  # Docker Desktop: a checkout's Debian script does not apply


@dataclass(frozen=True)
class HostFacts:
    """What the advice depends on, gathered once so tests can state any host."""

    checkout: Path | None  # the source checkout nbcontainers runs from, if it runs from one
    system: str  # platform.system(): "Linux", "Darwin", "Windows"


def _checkout() -> Path | None:
    root = Path(__file__).resolve().parent.parent.parent
    # An editable install runs from the checkout: its Makefile and scripts are there to use.
    if (root / "Makefile").is_file() and (root / "scripts" / "ensure-docker.sh").is_file():
        return root
    return None


def host_facts() -> HostFacts:
    return HostFacts(checkout=_checkout(), system=platform.system())


def engine_fix(
    runtime: ContainerRuntime, engine: str, host: HostFacts, endpoint: str | None = None
) -> str:
    """The command that gets ``runtime`` (registered as ``engine``) answering on this host;
    ``endpoint`` is where DOCKER_HOST (or a rootless socket) pointed, None for the default."""
    if endpoint and os.environ.get("DOCKER_HOST") == endpoint:
        return f"start the engine DOCKER_HOST names ({endpoint}), or unset DOCKER_HOST"
    if engine == "docker" and not endpoint and host.checkout and host.system not in _DESKTOP:
        # The checkout's own script installs and starts Debian's docker.io where none runs.
        return f"make -C {host.checkout} engine"
    said = runtime.advice("start", endpoint or "")
    return said or f"start the {engine} engine, then run `nbcontainers doctor` again"


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
