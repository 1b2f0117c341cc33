"""JupyterHub deployments: the shared read-only image store and ``nbcontainers hub setup``,
which prepares a host so that every user runs container kernels on their own rootless engine.
What a user reads when an image is in no store is the Podman runtime's
(``PodmanRuntime.missing_image_advice``)."""

from __future__ import annotations

from .store import SharedStore

__all__ = ["SharedStore"]
