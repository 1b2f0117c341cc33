"""Find and remove kernel containers whose Jupyter server is gone (`nbcontainers gc`)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

from ..labels import KERNEL_ID, OWNER, PRIVATE_DIR, ROLE, owner_alive
from ..runtimes.base import ContainerRuntime, ContainerState
from .netns import HOLDER_ROLE

__all__ = ["Orphan", "find_orphans", "remove_orphans"]


@dataclass(frozen=True)
class Orphan:
    """A container to sweep, and why (shown by ``nbcontainers gc`` before it removes any)."""

    container: ContainerState
    reason: str


def find_orphans(runtime: ContainerRuntime, include_foreign: bool = False) -> list[Orphan]:
    """Kernel containers that no live server owns (their server exited, or they exited),
    and shared network holders whose owner has no kernel left.

    Containers started from another host are left alone unless ``include_foreign``.
    """
    orphans = []
    kept_owners = set()
    for state in runtime.list({KERNEL_ID: None}):
        # None: the server ran on another host, so its pid says nothing here.
        alive = owner_alive(state.labels)
        if not state.running:
            orphans.append(Orphan(state, f"container {state.status} (exit {state.exit_code})"))
        elif alive is False:
            orphans.append(Orphan(state, "its Jupyter server is gone"))
        elif alive is None and include_foreign:
            orphans.append(Orphan(state, "started from another host"))
        else:
            kept_owners.add(state.labels.get(OWNER))
    # A network holder is needed while its owner has a kernel left.
    for state in runtime.list({ROLE: HOLDER_ROLE}):
        if state.labels.get(OWNER) not in kept_owners:
            orphans.append(Orphan(state, "shared network holder with no kernel left"))
    return orphans


def remove_orphans(runtime: ContainerRuntime, orphans: Sequence[Orphan]) -> list[str]:
    """Remove the containers and their private connection folders; return the removed names."""
    removed = []
    for orphan in orphans:
        runtime.remove(orphan.container.id)  # idempotent: a container gone meanwhile is fine
        private = orphan.container.labels.get(PRIVATE_DIR, "")
        # Only ever a folder we made: tempfile's directory, named nbc-*.
        if (
            private
            and os.path.dirname(private) == tempfile.gettempdir()
            and os.path.basename(private).startswith("nbc-")
        ):
            shutil.rmtree(private, ignore_errors=True)
        removed.append(orphan.container.name)
    return removed
