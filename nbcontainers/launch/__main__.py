"""Run the kernelspec launcher: ``python -m nbcontainers.launch … -f FILE -- KERNEL COMMAND``."""

from __future__ import annotations

import sys

from .launcher import main

__all__: list[str] = []

if __name__ == "__main__":  # importing the module (the API listing does) must not launch
    sys.exit(main())
