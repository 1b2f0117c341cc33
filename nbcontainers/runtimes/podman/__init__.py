"""The podman engine: rootless Podman through its Docker-compatible API, one service per user.

Modules: runtime.py (the runtime), service.py (the per-user API service), build.py (builds),
store.py (reading the shared read-only image store). The package exports only the runtime class,
and loads it on first use so that importing a sibling module (or the entry point's package)
costs nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .runtime import PodmanRuntime

__all__ = ["PodmanRuntime"]


def __getattr__(name: str) -> object:
    # The entry point ``nbcontainers.runtimes.podman:PodmanRuntime`` names the package, so that
    # users' and plug-ins' configs keep working now that the class lives in ``runtime.py``.
    if name == "PodmanRuntime":
        from .runtime import PodmanRuntime

        return PodmanRuntime
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
