"""Output folders written all at once: a sibling temp folder, renamed into place."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["replace_atomically"]


@contextmanager
def replace_atomically(folder: Path, prefix: str) -> Iterator[Path]:
    """Yield an empty sibling of ``folder`` to fill; when the block succeeds it replaces
    ``folder`` (removing what was there), and when it fails nothing is left behind."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=prefix, dir=folder.parent))
    staging.chmod(0o755)
    try:
        yield staging
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
