"""The catalog: image names -> pinned images, and what is made from them.

``entries.py`` reads the shipped catalog and the user's additions (names, pins, GPU needs),
``build.py`` builds a catalog image on the engine, ``kernelspecs.py`` writes the ``nbc-<image>``
kernelspecs that frontends list. Import from the modules themselves.
"""

__all__: list[str] = []
