"""A missing image for a `%container` command, got right in the cell: a catalog image is
built, a registry image pulled, with progress (:mod:`.progress`). Interrupting the cell
cancels it and leaves no image (the runtimes' contract); the same display serves
`%container snapshot --build`, `%container use ./DIR` and `%export-serving`'s build."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from IPython.core.error import UsageError

from ..catalog.entries import CatalogImage, load_catalog
from ..errors import NbcontainersError
from ..runtimes.base import ContainerRuntime
from ..runtimes.podman.store import missing_image_message
from .cellprogress import CellProgress, cell_progress

__all__ = ["Engines", "ensure_in_cell", "image_of_spec", "showing"]


class Engines:
    """The notebook's runtimes by name, made on first use: the check that an image is there
    costs one engine round trip (under 1 ms here) instead of a new client (about 10 ms)."""

    def __init__(self) -> None:
        self._made: dict[tuple[str, str], ContainerRuntime] = {}

    def get(self, name: str) -> ContainerRuntime:
        from ..runtimes import get_runtime

        # "auto" follows DOCKER_HOST, which a notebook may change between two starts.
        key = (name, os.environ.get("DOCKER_HOST", ""))
        if key not in self._made:
            try:
                self._made[key] = get_runtime(name)
            except NbcontainersError as exc:
                raise UsageError(str(exc)) from None
        return self._made[key]


@contextmanager
def showing(
    shell: Any,
    begin: str,
    done: str,
    what: str = "build",
    undone: str = "it left no image",
) -> Iterator[CellProgress]:
    """Progress for the work in the ``with`` block: ``begin`` first, then ``done`` (with the
    time taken) or why it stopped. An interrupt says what was ``undone`` and propagates, so
    "Run all", nbclient and papermill stop at this cell."""
    progress = cell_progress(shell)
    progress.begin(begin + " Interrupt the cell to cancel.")
    try:
        yield progress
    except KeyboardInterrupt:
        progress.end(f"Cancelled the {what} after {progress.elapsed()}: {undone}.", ok=False)
        raise
    except BaseException:
        progress.end(f"The {what} failed after {progress.elapsed()}.", ok=False)
        raise
    progress.end(f"{done} in {progress.elapsed()}.", ok=True)


def image_of_spec(spec: Any) -> tuple[CatalogImage, str] | None:
    """The catalog image and runtime name a kernelspec's nbcontainers provisioner starts,
    or None for a kernelspec of another provisioner."""
    provisioner = spec.metadata.get("kernel_provisioner", {})
    if provisioner.get("provisioner_name") != "nbcontainers":
        return None
    config = provisioner.get("config", {})
    if not config.get("image"):
        return None  # the provisioner itself says what is missing
    return load_catalog()[config["image"]], str(config.get("runtime", "auto"))


def ensure_in_cell(
    shell: Any, image: CatalogImage, runtime: ContainerRuntime | None = None
) -> None:
    """Return once ``image`` is on the engine, building or pulling it with progress in the
    cell if it is not; a failure is a ``UsageError`` that says what to do."""
    from ..catalog.build import build_image
    from ..kernels.policy import load_policy
    from ..kernels.policy_rules import check_image
    from ..runtimes import get_runtime

    try:
        # The admin's allowed images are checked before anything is built or pulled: a
        # refused image must not reach the engine (or its registry) at all.
        check_image(load_policy(), image)
        runtime = runtime or get_runtime()
        if runtime.image_info(image.ref) is not None:
            return
        if not image.user_defined and runtime.ping().rootless:
            # On a hub the catalog images come from the admin's shared store: a copy built
            # in each user's own storage would cost minutes and gigabytes per user.
            shared = missing_image_message(image.ref, image.kernel_name)
            if shared:
                raise UsageError(shared)
        if image.buildable:
            with showing(
                shell,
                f"Image {image.name} ({image.ref}) is not built yet: building it now "
                f"with {runtime.builder()}.",
                f"Built {image.ref}",
            ) as progress:
                build_image(image, runtime, on_event=progress.build_event)
        else:
            with showing(
                shell,
                f"Image {image.name} ({image.ref}) is not on this engine: pulling it now.",
                f"Pulled {image.ref}",
                what="pull",
                undone="the image was not added",
            ) as progress:
                try:
                    runtime.pull(image.ref, progress.pulled)
                except KeyboardInterrupt:
                    with suppress(NbcontainersError):  # the interrupt is what the cell says
                        if runtime.image_info(image.ref) is not None:
                            runtime.remove_image(image.ref)  # done as the interrupt came
                    raise
    except NbcontainersError as exc:
        raise UsageError(str(exc)) from None
