"""The docker engine: Docker, rootful or rootless, through its Engine API.

Modules: runtime.py (the runtime), wire.py (the Engine API's request and answer shapes). The
package exports only the runtime class, and loads it on first use so that importing a sibling
module (or the entry point's package) costs nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .runtime import DockerRuntime

__all__ = ["DockerRuntime"]


def __getattr__(name: str) -> object:
    # The entry point ``nbcontainers.runtimes.docker:DockerRuntime`` names the package, so that
    # users' and plug-ins' configs keep working now that the class lives in ``runtime.py``.
    if name == "DockerRuntime":
        from .runtime import DockerRuntime

        return DockerRuntime
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
