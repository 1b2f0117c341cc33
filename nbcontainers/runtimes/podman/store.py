"""Podman image stores outside any user's running engine: the command lines that read and
load a store folder as root (``podman --root STORE``), and loading an image saved from the
Docker engine into such a store (the ``docker save | podman load`` pipe, through the seam).

A shared read-only store is one copy of the catalog images that every user's rootless Podman
reads through ``additionalimagestores`` (``storageconf.py``); its folder layout, ownership and
sealing are the hub admin's business (``nbcontainers.hub.store``), the engine's command lines
are here.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ...errors import NbcontainersError, Unsupported
from ..base import ContainerRuntime
from ..docker.export import saved_image
from ..docker.runtime import DockerRuntime

__all__ = [
    "DEFAULT_STORE",
    "KNOWN_DRIVERS",
    "LOAD_TIMEOUT",
    "StoreEngine",
    "load_saved",
    "source_image_id",
]

# Where `hub setup` keeps the shared store unless told otherwise; `doctor` looks there too.
DEFAULT_STORE = Path("/var/lib/nbcontainers/storage")
KNOWN_DRIVERS = ("vfs", "overlay", "btrfs", "zfs")
LOAD_TIMEOUT = 1800.0  # seconds for one `docker save | podman load` of a multi-GB image

Loader = Callable[[IO[bytes]], "subprocess.CompletedProcess[str]"]


def source_image_id(source: ContainerRuntime, ref: str) -> str | None:
    """The id of ``ref`` on ``source`` (the engine images are copied from) as Podman writes
    ids (no ``sha256:``), or ``None`` when the image is not there or the engine does not
    answer: what a store's copy is compared with."""
    try:
        info = source.image_info(ref)
    except NbcontainersError:
        return None
    return info.id.removeprefix("sha256:") or None if info else None


def load_saved(load: Loader, source: ContainerRuntime, ref: str, where: object) -> None:
    """Save ``ref`` from ``source`` (the system Docker engine) and feed it to ``load`` (a
    ``podman load`` as root or as a user, reading its stdin); ``RuntimeError`` naming both
    sides when either fails."""
    if not isinstance(source, DockerRuntime):
        raise Unsupported(
            f"Images are copied into Podman stores from a Docker engine's saved images; the "
            f"{type(source).__name__} runtime saves none. Build the images on the system "
            "Docker engine (`nbcontainers images build`)."
        )
    with saved_image(source, ref) as saved:
        loaded = load(saved.stream)
    if saved.error or loaded.returncode != 0:
        said = f"saving it from the Docker engine failed: {saved.error}; " if saved.error else ""
        raise RuntimeError(
            f"loading {ref} into {where} failed ({said}podman load exited "
            f"{loaded.returncode}): {loaded.stderr.strip()[-800:]}"
        )


@dataclass(frozen=True)
class StoreEngine:
    """Podman driven on the store at ``root`` (as root, with its own ``runroot``): what
    ``hub setup`` loads and reads there."""

    root: Path
    driver: str = "vfs"
    runroot: Path = Path("/run/nbcontainers/storage")

    def _podman(self, *args: str) -> list[str]:
        podman = shutil.which("podman") or "podman"
        return [podman, "--root", str(self.root), "--runroot", str(self.runroot),
                "--storage-driver", self.driver, *args]  # fmt: skip

    def image_id(self, ref: str) -> str | None:
        """The image's id in this store, or ``None`` when it is not there."""
        done = subprocess.run(
            self._podman("image", "inspect", "--format", "{{.ID}}", ref),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return done.stdout.strip() or None if done.returncode == 0 else None

    def images(self) -> list[str]:
        """``repository:tag`` of every image in the store. Listing as root also creates the
        store's ``images.lock`` and ``layers.lock``: a user's engine only opens them (it can't
        create files in the store) and fails on a fresh store without them."""
        done = subprocess.run(
            self._podman("images", "--format", "{{.Repository}}:{{.Tag}}"),
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return [line for line in done.stdout.splitlines() if line.strip()]

    def load(self, source: ContainerRuntime, ref: str) -> None:
        """Copy ``ref`` from ``source`` into the store (its folder must exist already)."""

        def load(stream: IO[bytes]) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                self._podman("load", "-q"),
                stdin=stream,
                capture_output=True,
                text=True,
                timeout=LOAD_TIMEOUT,
                check=False,
                cwd="/",
                start_new_session=True,
            )

        load_saved(load, source, ref, self.root)
        self.images()
