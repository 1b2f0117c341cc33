"""Model -> serving image: `%export-serving` and `nbcontainers export` (see export.py).

``export.py`` orchestrates: the model capture runs in the kernel (``inkernel/``, sent by
``serialize.py``), the lock comes from ``recipe/``, ``render.py`` writes the folder with the
server (``image/``, joined by ``server.py``) and ``manifests.py``'s deployment files, and
``smoke.py`` checks the built image's answer against the notebook's.
"""

from __future__ import annotations

__all__: list[str] = []
