"""nbcontainers: containers as a first-class part of Jupyter."""

from __future__ import annotations

from .catalog.entries import Catalog, CatalogImage, load_catalog
from .errors import (
    BuildError,
    ConfigError,
    ContainerCrashed,
    EngineUnavailable,
    GPUUnavailable,
    ImageMissing,
    NbcontainersError,
    RuntimeFailure,
    SnapshotError,
    UnknownImage,
)

__version__ = "0.1.0"

__all__ = [
    "BuildError",
    "Catalog",
    "CatalogImage",
    "ConfigError",
    "ContainerCrashed",
    "EngineUnavailable",
    "GPUUnavailable",
    "ImageMissing",
    "NbcontainersError",
    "RuntimeFailure",
    "SnapshotError",
    "UnknownImage",
    "__version__",
    "load_catalog",
    "load_ipython_extension",
    "unload_ipython_extension",
]


def load_ipython_extension(ipython: object) -> None:
    """`%load_ext nbcontainers`: the `%container` magics (idempotent)."""
    from .magics import load

    load(ipython)


def unload_ipython_extension(ipython: object) -> None:
    """`%unload_ext nbcontainers`: stop container kernels, run cells locally again."""
    from .magics import unload

    unload(ipython)
