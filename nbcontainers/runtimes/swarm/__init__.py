"""The swarm engine: Docker Swarm: a kernel is a one-replica service on a node the scheduler picks.

Modules: runtime.py (the runtime), wire.py (the service spec and task shapes). The package
exports only the runtime class, and loads it on first use so that importing a sibling module (or
the entry point's package) costs nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .runtime import SwarmRuntime

__all__ = ["SwarmRuntime"]


def __getattr__(name: str) -> object:
    # The entry point ``nbcontainers.runtimes.swarm:SwarmRuntime`` names the package, so that
    # users' and plug-ins' configs keep working now that the class lives in ``runtime.py``.
    if name == "SwarmRuntime":
        from .runtime import SwarmRuntime

        return SwarmRuntime
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
