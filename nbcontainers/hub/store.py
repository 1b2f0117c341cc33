"""The hub's shared read-only image store: one copy of the catalog images, loaded by the admin
(root) from the system Docker engine, that every user's rootless Podman reads through
``additionalimagestores``.

The store is the admin's: its folder is made here before the engine would make it (0700, which
stops users' engines), the images are loaded as root, ``seal.py`` opens it to the hub's group
only, and ``setup.py`` reports on it. What the engine does on it (``podman --root STORE load``,
listing, inspecting) is the Podman runtime's (``runtimes/podman/store.py``). Users on native
overlay can't use a root-owned store (host root's files are unmapped in their namespace and
overlay doesn't copy them), so ``peruser.py`` loads their own storage instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..runtimes.base import ContainerRuntime
from ..runtimes.podman.storageconf import STORAGE_CONF, configured_stores
from ..runtimes.podman.store import DEFAULT_STORE, StoreEngine

__all__ = ["DEFAULT_STORE", "SharedStore", "shared_stores_here"]


def shared_stores_here() -> list[Path]:
    """The shared stores on this host: those the system ``storage.conf`` names, and the
    default one where it exists (named or not: `doctor` checks who can read it)."""
    stores = [Path(s) for s in configured_stores(STORAGE_CONF)]
    if DEFAULT_STORE.exists() and DEFAULT_STORE not in stores:
        stores.append(DEFAULT_STORE)
    return stores


@dataclass(frozen=True)
class SharedStore:
    """A Podman image store at ``root`` that root writes and every user reads."""

    root: Path = DEFAULT_STORE
    driver: str = "vfs"
    runroot: Path = Path("/run/nbcontainers/storage")

    @property
    def engine(self) -> StoreEngine:
        """Podman on this store, as root."""
        return StoreEngine(self.root, self.driver, self.runroot)

    def image_id(self, ref: str) -> str | None:
        """The image's id in this store, or ``None`` when it is not there."""
        return self.engine.image_id(ref)

    def images(self) -> list[str]:
        return self.engine.images()

    def make_root(self) -> None:
        """Make the store's missing folders before Podman does (it makes them 0700, which
        stops users' engines): each missing parent 0755, the store itself 0700 until
        ``seal.seal_store`` opens it to the hub's group. Folders that exist are left as
        they are: setup never widens a folder it did not make."""
        missing = [p for p in [self.root, *self.root.parents] if not p.exists()]
        for folder in reversed(missing):
            folder.mkdir(mode=0o700 if folder == self.root else 0o755)
            folder.chmod(0o700 if folder == self.root else 0o755)  # whatever the umask

    def load_from(self, source: ContainerRuntime, ref: str) -> None:
        """Copy ``ref`` from ``source`` (the system Docker engine) into the store."""
        self.make_root()
        self.engine.load(source, ref)
