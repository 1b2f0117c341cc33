"""`%container snapshot`: capture the environment a kernel really runs in, write a folder that
plain `docker build` turns back into it, and optionally verify that by rebuilding.

``live.py`` captures a kernel (the capture itself is ``capture.py``, which runs
``inkernel/environment.py`` inside the live kernel, local or container, or one reached by its
connection file), ``folder.py`` writes the folder, ``verify.py`` rebuilds and compares.
Nothing from the environment (variables, pip credentials) is captured; credentials in the URLs
that are (install sources, `%pip` history) are redacted in everything written
(``recipe/redact.py``), and the files copied into the image are scanned for secrets first
(``secrets.py``): a hit stops the snapshot, naming file and line.
"""

from __future__ import annotations

# capture_python is capture.py's; it is named here too because cli.py imports it from here.
from ..recipe.capture import capture_python
from ..recipe.dockerfile import DEFAULT_BASE
from ..recipe.lock import minimal_packages
from .folder import MARKER, check_target, is_snapshot_folder, write_snapshot
from .live import lookup_hashes, snapshot_kernel, take_snapshot
from .verify import build_and_verify, compare_packages, image_packages, snapshot_image

__all__ = [
    "DEFAULT_BASE",
    "MARKER",
    "build_and_verify",
    "capture_python",
    "check_target",
    "compare_packages",
    "image_packages",
    "is_snapshot_folder",
    "lookup_hashes",
    "minimal_packages",
    "snapshot_image",
    "snapshot_kernel",
    "take_snapshot",
    "write_snapshot",
]
