"""A kernel's image on the engine before it starts: fail fast with the fixing command, or
build or pull it with its progress in the server log, as ``missing_image`` says."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from ..catalog.entries import CatalogImage
from ..errors import ImageMissing
from ..runtimes.base import (
    BuildCallback,
    BuildEvent,
    ContainerRuntime,
    ProgressCallback,
    missing_image_advice,
)

__all__ = ["MISSING_IMAGE_POLICIES", "ensure_image"]

MISSING_IMAGE_POLICIES = ("error", "build", "pull")


def ensure_image(
    runtime: ContainerRuntime,
    image: CatalogImage,
    policy: str,
    log: logging.Logger | logging.LoggerAdapter[Any],
    wait: float | None = None,
) -> None:
    """Return once ``image`` is on the engine; ``policy`` is one of
    :data:`MISSING_IMAGE_POLICIES`. A build or pull runs in the background, its progress in
    ``log``; after ``wait`` seconds (the kernel's start timeout) the start fails with a
    message that says so, and a later start waits for the same build."""
    if runtime.image_info(image.ref) is not None:
        return
    if policy == "error":
        # The default: a kernel start has a timeout, and a silent pull of gigabytes under it
        # looks like a hang. The command shows progress where the user is looking.
        # The engine may know better where the image comes from (on a hub: the admin's
        # shared store, not the user).
        advice = missing_image_advice(runtime, image.ref, image.kernel_name)
        if advice:
            raise ImageMissing(advice)
        how = (
            f"nbcontainers images build {image.name}"
            if image.buildable
            else f"nbcontainers images pull {image.name}"
        )
        raise ImageMissing(
            f"Image {image.ref} for kernel 'nbc-{image.name}' is not on this Docker engine. "
            f"Get it first with `{how}` (shows progress) or `%container use {image.name}` in "
            "a notebook (gets it in the cell, with a progress bar), or set "
            f"c.ContainerProvisioner.missing_image = 'build' to build it at kernel start."
        )
    log.warning(
        "Image %s is missing; %sing it now (this can take minutes; progress follows).",
        image.ref,
        policy.rstrip("e"),
    )
    job = _job(runtime, image, policy, log)
    job.done.wait(wait)
    if not job.done.is_set():
        # Jupyter shows a failed start to the user; a start that hangs for minutes looks
        # like a broken server. The build goes on, and the next start picks it up.
        raise ImageMissing(
            f"Image {image.ref} for kernel 'nbc-{image.name}' is still being "
            f"{'built' if job.building else 'pulled'} ({time.monotonic() - job.started:.0f} s "
            "so far; the server log shows its progress). Start the kernel again in a few "
            "minutes, or raise c.ContainerProvisioner.startup_timeout "
            f"(now {wait:.0f} s) to wait for it."
        )
    if job.error is not None:
        with _JOBS_LOCK:  # shown once: the next start tries again
            if _JOBS.get(image.ref) is job:
                del _JOBS[image.ref]
        raise job.error


class _Job:
    """One build or pull of a missing image, shared by the kernel starts that wait for it."""

    def __init__(self, building: bool) -> None:
        self.building = building
        self.started = time.monotonic()
        self.done = threading.Event()
        self.error: BaseException | None = None


_JOBS: dict[str, _Job] = {}
_JOBS_LOCK = threading.Lock()


def _job(
    runtime: ContainerRuntime,
    image: CatalogImage,
    policy: str,
    log: logging.Logger | logging.LoggerAdapter[Any],
) -> _Job:
    """The job getting ``image``: the one under way, else a new one in its own thread. A
    job that failed since the last start is handed out once more, so its error is shown."""
    with _JOBS_LOCK:
        job = _JOBS.pop(image.ref, None)
        if job is not None and (not job.done.is_set() or job.error is not None):
            if not job.done.is_set():
                _JOBS[image.ref] = job
            return job
        job = _JOBS[image.ref] = _Job(policy == "build" and image.buildable)

    def run() -> None:
        try:
            if job.building:
                from ..catalog.build import build_image

                build_image(image, runtime, on_event=_build_logger(image.ref, log))
            else:
                runtime.pull(image.ref, _pull_logger(log))
            log.info("Image %s is ready after %.0f s.", image.ref, time.monotonic() - job.started)
        except BaseException as exc:
            log.error("Getting image %s failed: %s", image.ref, exc)
            job.error = exc
        finally:
            job.done.set()

    threading.Thread(target=run, name=f"nbc-image-{image.name}", daemon=True).start()
    return job


def _build_logger(ref: str, log: logging.Logger | logging.LoggerAdapter[Any]) -> BuildCallback:
    """Steps at INFO (the server log shows how far the build is), other lines at DEBUG."""

    def on_event(event: BuildEvent) -> None:
        if event.kind == "step":
            log.info("Building %s: step %s/%s %s", ref, event.step, event.total, event.text)
        else:
            log.debug("Building %s: %s", ref, event.text)

    return on_event


def _pull_logger(log: logging.Logger | logging.LoggerAdapter[Any]) -> ProgressCallback:
    """A line per tenth of the bytes."""
    last = [-1]

    def progress(what: str, done: int, total: int | None) -> None:
        decile = int(10 * done / total) if total else 0
        if decile != last[0]:
            last[0] = decile
            log.info("%s: %.0f/%.0f MiB", what, done / 2**20, (total or 0) / 2**20)

    return progress
