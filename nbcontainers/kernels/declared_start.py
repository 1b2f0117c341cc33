"""The ``nbc-notebook`` kernel's settings: its notebook's declaration applied to a start.

Both ways in call it (the provisioner with the env and cwd Jupyter Server passes, the launcher
with its own): :mod:`~nbcontainers.kernels.declared` finds the notebook and reads what it
declares; the admin's policy is applied after it, as to any start.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..runtimes.base import ContainerRuntime
from . import declared

if TYPE_CHECKING:
    from .starter import StartSettings

__all__ = ["DEFAULT_NOTEBOOK_IMAGE", "declared_settings"]

# What nbc-notebook starts when the notebook declares nothing (said in one line).
DEFAULT_NOTEBOOK_IMAGE = "python"


def declared_settings(
    settings: StartSettings,
    env: Mapping[str, str],
    cwd: str | None,
    runtime: ContainerRuntime,
    log: Any,
    kernel_manager: Any = None,
) -> tuple[StartSettings, str | None]:
    """``settings`` with the image and resources the notebook (found from ``env``, ``cwd``
    and the provisioner's ``kernel_manager``) declares, and the one-line note when it
    declares nothing (the default image). A declared snapshot is built, a pinned digest
    pulled, with progress in ``log``."""
    notebook = declared.notebook_path(env, cwd, kernel_manager)
    declaration, note = declared.read_declaration(notebook, DEFAULT_NOTEBOOK_IMAGE, kernel_manager)
    launch = declared.apply_declaration(
        settings.launch, declaration, runtime=runtime, log=log, wait=settings.startup_timeout
    )
    image = getattr(launch, "image", "") or declared.resolve_image(declaration).name
    gpus = getattr(launch, "gpus", declaration.gpus)
    return replace(settings, image=image, gpus=gpus, launch=launch), note
