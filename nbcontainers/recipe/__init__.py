"""Environment -> lock -> Dockerfile: the one pipeline behind snapshots and serving exports.

``environment.py`` holds the captured environment as values, ``lock.py`` turns it into a
requirements lock (closure, pins, hashes), ``hashes.py`` finds the published hashes, and
``dockerfile.py`` writes the lines both kinds of Dockerfile share: the Debian system layer and
the secret-mounted pip install step that :func:`nbcontainers.catalog.build.build_image` feeds.
"""

from __future__ import annotations

__all__: list[str] = []
