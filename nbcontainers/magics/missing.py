"""A missing image for a `%container` command, got right in the cell: a catalog image is
built, a registry image pulled, with progress (:mod:`.cellprogress`). Interrupting the cell
cancels it and leaves no image (the runtimes' contract); the same display serves
`%container snapshot --build`, `%container use ./DIR` and `%export-serving`'s build."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

from IPython.core.error import UsageError

from ..catalog.entries import CatalogImage
from ..errors import NbcontainersError
from ..relay.session import ensure_image
from ..runtimes.base import ContainerRuntime
from .cellprogress import CellProgress, cell_progress

__all__ = ["ensure_in_cell", "showing"]


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


def ensure_in_cell(
    shell: Any, image: CatalogImage, runtime: ContainerRuntime | None = None
) -> None:
    """Return once ``image`` is on the engine, building or pulling it with progress in the
    cell if it is not (:func:`~nbcontainers.relay.session.ensure_image`); a failure is a
    ``UsageError`` that says what to do."""
    try:
        ensure_image(image, runtime, partial(showing, shell))
    except NbcontainersError as exc:
        raise UsageError(str(exc)) from None
