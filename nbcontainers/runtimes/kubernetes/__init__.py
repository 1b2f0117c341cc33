"""The kubernetes engine: Kubernetes: a kernel is a pod in the user's namespace.

Modules: runtime.py (the runtime), client.py, pods.py, status.py, template.py, names.py. The
package exports only the runtime class, and loads it on first use so that importing a sibling
module (or the entry point's package) costs nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .runtime import KubernetesRuntime

__all__ = ["KubernetesRuntime"]


def __getattr__(name: str) -> object:
    # The entry point ``nbcontainers.runtimes.kubernetes:KubernetesRuntime`` names the package,
    # so that users' and plug-ins' configs keep working now that the class lives in ``runtime.py``.
    if name == "KubernetesRuntime":
        from .runtime import KubernetesRuntime

        return KubernetesRuntime
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
