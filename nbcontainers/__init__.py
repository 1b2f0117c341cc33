"""nbcontainers: containers as a first-class part of Jupyter."""

from __future__ import annotations

from .catalog import Catalog, CatalogImage, load_catalog
from .errors import (
    BuildError,
    ConfigError,
    ContainerCrashed,
    EngineUnavailable,
    GPUUnavailable,
    ImageMissing,
    NbcontainersError,
    RuntimeFailure,
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
    "UnknownImage",
    "__version__",
    "load_catalog",
]
