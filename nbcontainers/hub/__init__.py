"""JupyterHub deployments: the shared read-only image store and ``nbcontainers hub setup``,
which prepares a host so that every user runs container kernels on their own rootless engine."""

from __future__ import annotations

from ..runtimes.podman.store import SharedStore, missing_image_message

__all__ = ["SharedStore", "missing_image_message"]
