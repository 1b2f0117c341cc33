"""A user's rootless Podman driven through its command line *as that user* by the hub's admin
(``hub setup`` passes ``AsUser.run``): which storage driver the user has or can have, a stale
engine's reset, the images it lists, loading an image into its own storage, one throwaway
container and its rootless network. The user's own kernels never come here: they talk to the
user's engine through ``runtime.py``.

Every answer read here comes from a process the user controls: callers treat it as a fact
about the user's engine, never as something to run or trust further.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Protocol

from ..base import ContainerRuntime
from .store import KNOWN_DRIVERS, LOAD_TIMEOUT, load_saved

__all__ = [
    "UserCommand",
    "list_images",
    "load_for_user",
    "migrate",
    "native_overlay_works",
    "remove_container",
    "rootless_netns",
    "run_throwaway",
    "store_driver",
    "user_image_id",
    "user_storage_driver",
]

NAME_FORMAT = "{{.Repository}}:{{.Tag}}"
Done = subprocess.CompletedProcess[str]


class UserCommand(Protocol):
    """Runs a command as one user (``hub setup`` passes ``AsUser.run``: no terminal, a new
    session, root-owned engine configuration)."""

    def __call__(
        self, *command: str, timeout: float = ..., stdin: int | IO[bytes] | None = ...,
        check: bool = ...,
    ) -> Done: ...  # fmt: skip


def native_overlay_works(run: UserCommand, scratch: Path) -> bool:
    """Whether rootless native overlay works on this kernel for the user ``run`` runs as:
    ``podman info`` on a throw-away store in ``scratch`` (a folder the user owns) reports
    "Native Overlay Diff: true"."""
    probe = run(
        "podman", "--storage-driver", "overlay", "--root", str(scratch / "root"),
        "--runroot", str(scratch / "run"), "info", "--format", "{{.Store.GraphStatus}}",
    )  # fmt: skip
    return probe.returncode == 0 and "Native Overlay Diff:true" in probe.stdout


def store_driver(run: UserCommand) -> Done:
    """``podman info``'s storage driver of the user's engine; a failure's stderr says why
    (a stale engine says "podman system migrate")."""
    return run("podman", "info", "--format", "{{.Store.GraphDriverName}}")


def migrate(run: UserCommand) -> Done:
    """Reset a stale engine whose pause process died (``podman system migrate``)."""
    return run("podman", "system", "migrate", timeout=300)


def user_storage_driver(run: UserCommand, layer_dirs: Sequence[str]) -> str | None:
    """The storage driver of the user's existing rootless store, ``None`` when the user has
    none yet. ``layer_dirs`` are the ``<driver>-layers`` folders in the user's graph root
    (Podman makes one at a user's first command; changing the driver of a store that exists
    would hide its images, so callers keep it). Only a driver Podman knows is returned: the
    answer comes from a process the user controls."""
    if not layer_dirs:
        return None
    info = store_driver(run)
    said = info.stdout.strip()
    if info.returncode == 0 and said in KNOWN_DRIVERS:
        return said
    found = layer_dirs[0].removesuffix("-layers")
    return found if found in KNOWN_DRIVERS else None


def list_images(run: UserCommand) -> Done:
    """``repository:tag`` of every image the user's engine lists (its own and the stores it
    reads), one per line of ``stdout``."""
    return run("podman", "images", "--format", NAME_FORMAT)


def user_image_id(run: UserCommand, ref: str) -> str | None:
    """The id of ``ref`` in the user's engine (its own storage or a store it reads)."""
    done = run("podman", "image", "inspect", "--format", "{{.ID}}", ref, timeout=60)
    return done.stdout.strip() or None if done.returncode == 0 else None


def load_for_user(run: UserCommand, source: ContainerRuntime, ref: str) -> None:
    """Copy ``ref`` from ``source`` (the system Docker engine) into the user's own storage."""

    def load(stream: IO[bytes]) -> Done:
        return run("podman", "load", "-q", timeout=LOAD_TIMEOUT, stdin=stream)

    load_saved(load, source, ref, "the user's storage")


def run_throwaway(
    run: UserCommand, name: str, image: str, timeout: float, oci_runtime: str | None = None
) -> Done:
    """Start one container named ``name`` from ``image`` that exits at once and is removed:
    no network, no capabilities, no new privileges, never a pull. ``oci_runtime`` picks one
    (``runc`` where crun refuses the host's cgroups)."""
    chosen = ["--runtime", oci_runtime] if oci_runtime else []
    return run("podman", "run", *chosen, "--rm", "--name", name, "--network", "none",
               "--pull", "never", "--cap-drop", "all", "--security-opt", "no-new-privileges",
               "--entrypoint", "true", image, timeout=timeout)  # fmt: skip


def remove_container(run: UserCommand, name: str) -> None:
    """Remove the container ``name`` (gone already is fine)."""
    run("podman", "rm", "-f", name, timeout=60)


def rootless_netns(run: UserCommand) -> Done:
    """Set up the user's rootless network namespace, what kernels join, and leave it."""
    return run("podman", "unshare", "--rootless-netns", "true", timeout=120)
