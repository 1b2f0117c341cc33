"""A kernel's image on the engine before it starts: fail fast with the fixing command, or
build or pull it with its progress in the server log, as ``missing_image`` says."""

from __future__ import annotations

import logging
from typing import Any

from ..catalog import CatalogImage
from ..errors import ImageMissing
from ..runtimes.base import ContainerRuntime
from ..runtimes.podman_store import missing_image_message

__all__ = ["MISSING_IMAGE_POLICIES", "ensure_image"]

MISSING_IMAGE_POLICIES = ("error", "build", "pull")


def ensure_image(
    runtime: ContainerRuntime,
    image: CatalogImage,
    policy: str,
    log: logging.Logger | logging.LoggerAdapter[Any],
) -> None:
    """Return once ``image`` is on the engine; ``policy`` is one of
    :data:`MISSING_IMAGE_POLICIES`."""
    if runtime.image_info(image.ref) is not None:
        return
    if policy == "error":
        # The default: a kernel start has a timeout, and a silent pull of gigabytes under it
        # looks like a hang. The command shows progress where the user is looking.
        if runtime.ping().rootless:
            # On a hub the catalog images come from the admin's shared store, not the user.
            shared = missing_image_message(image.ref, image.kernel_name)
            if shared:
                raise ImageMissing(shared)
        how = (
            f"nbcontainers images build {image.name}"
            if image.buildable
            else f"nbcontainers images pull {image.name}"
        )
        raise ImageMissing(
            f"Image {image.ref} for kernel 'nbc-{image.name}' is not on this Docker engine. "
            f"Get it first with `{how}` (shows progress), or set "
            f"c.ContainerProvisioner.missing_image = 'build' to build it at kernel start."
        )
    log.warning(
        "Image %s is missing; %sing it now (this can take minutes).",
        image.ref,
        policy.rstrip("e"),
    )
    if policy == "build" and image.buildable:
        from ..build import build_image  # the build machinery only when a build happens

        build_image(image, runtime, on_line=lambda line: log.info("build: %s", line))
    else:
        runtime.pull(image.ref, lambda what, done, total: log.info("%s: %s/%s", what, done, total))
