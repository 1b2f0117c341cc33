"""A notebook file caught mid-save, as Jupyter Server's in-place save leaves it for a moment."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def mid_save(path: Path, rest_after: float = 0.3) -> Iterator[None]:
    """``path`` holds half its text on entry; the whole text is back ``rest_after`` seconds
    later (the save finishing), and certainly by the block's end."""
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    saver = threading.Timer(rest_after, path.write_text, args=(text,))
    saver.start()
    try:
        yield
    finally:
        saver.join()
