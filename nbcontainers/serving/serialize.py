"""The model capture as the host sends it: the in-kernel modules (``nbcontainers/inkernel/``:
``serialize.py`` and what it imports) joined into the one source a kernel runs.

``FORMATS`` is the kernel side's own list, here for the magic's and the CLI's ``--format``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from ..inkernel.serialize import FORMATS
from ..sources import bundle

__all__ = ["FORMATS", "MODULES", "source"]

# In dependency order: each module after those it imports from.
MODULES = ("examples", "code", "rows", "other_models", "torch_model", "serialize")


@lru_cache(maxsize=1)
def source() -> str:
    """The model capture's source; run as a module it defines ``export_object``."""
    folder = Path(__file__).parent.parent / "inkernel"
    return bundle(
        folder,
        MODULES,
        "Model capture sent into the kernel by nbcontainers (export-serving).\n\n"
        "Assembled from nbcontainers/inkernel/ (" + ", ".join(f"{m}.py" for m in MODULES) + ").",
    )
