"""Find and remove kernel containers whose Jupyter server is gone (`nbcontainers gc`)."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass

from .labels import KERNEL_ID, PRIVATE_DIR, owner_alive
from .runtimes.base import ContainerRuntime, ContainerState

__all__ = ["Orphan", "find_orphans", "remove_orphans"]


@dataclass(frozen=True)
class Orphan:
    container: ContainerState
    reason: str


def find_orphans(runtime: ContainerRuntime, include_foreign: bool = False) -> list[Orphan]:
    """Kernel containers that no live server owns: their server exited, or they exited.

    Containers started from another host are left alone unless ``include_foreign``.
    """
    orphans = []
    for state in runtime.list({KERNEL_ID: None}):
        alive = owner_alive(state.labels)
        if not state.running:
            orphans.append(Orphan(state, f"container {state.status} (exit {state.exit_code})"))
        elif alive is False:
            orphans.append(Orphan(state, "its Jupyter server is gone"))
        elif alive is None and include_foreign:
            orphans.append(Orphan(state, "started from another host"))
    return orphans


def remove_orphans(runtime: ContainerRuntime, orphans: Sequence[Orphan]) -> list[str]:
    """Remove the containers and their private connection folders; return the removed names."""
    removed = []
    for orphan in orphans:
        runtime.remove(orphan.container.id)
        private = orphan.container.labels.get(PRIVATE_DIR, "")
        if private.startswith("/tmp/nbc-") or "/nbc-" in private:
            shutil.rmtree(private, ignore_errors=True)
        removed.append(orphan.container.name)
    return removed
