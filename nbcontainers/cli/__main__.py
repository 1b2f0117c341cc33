"""`python -m nbcontainers.cli`: the same command line as `nbcontainers`."""

from __future__ import annotations

from . import main

__all__: list[str] = []

if __name__ == "__main__":
    main()
