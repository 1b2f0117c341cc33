"""An image of the Docker engine as the tar stream ``docker save`` writes, read from a pipe so
that another engine's loader (``podman load``, as root or as a user) can take it as its stdin.

The Engine API's ``GET /images/{name}/get`` is what the ``docker save`` command line asks for
too; reading it through the runtime's client means no ``docker`` program is needed and the
same endpoint (``DOCKER_HOST``) is used as for everything else.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

from .runtime import DockerRuntime

__all__ = ["SavedImage", "saved_image"]


class SavedImage:
    """The stream of one image being saved; ``error`` says why saving failed (set once the
    ``with`` block of :func:`saved_image` has ended, "" when it did not fail)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.error = ""


@contextmanager
def saved_image(runtime: DockerRuntime, ref: str) -> Iterator[SavedImage]:
    """``ref`` saved from ``runtime``'s engine, readable from ``.stream`` (a pipe with a file
    descriptor: pass it as a child process's stdin). A thread feeds the pipe; when the reader
    stops early the feeding stops too (the pipe breaks), so nothing is left running."""
    read_fd, write_fd = os.pipe()  # not inherited by children: only the reader's end is given
    saved = SavedImage(os.fdopen(read_fd, "rb"))

    def feed() -> None:
        try:
            with os.fdopen(write_fd, "wb") as out:
                for chunk in runtime.api.get_image(ref):
                    out.write(chunk)
        except BrokenPipeError:
            saved.error = "the loader stopped reading"
        except Exception as exc:  # the SDK's, the transport's: all end up in the caller's report
            saved.error = f"{type(exc).__name__}: {exc}"

    feeder = threading.Thread(target=feed, name=f"nbc-save-{ref}", daemon=True)
    feeder.start()
    try:
        yield saved
    finally:
        saved.stream.close()  # a feeder still writing gets a broken pipe and ends
        feeder.join()
