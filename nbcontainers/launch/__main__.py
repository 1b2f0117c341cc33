"""Run the kernelspec launcher: ``python -m nbcontainers.launch … -f FILE -- KERNEL COMMAND``."""

from __future__ import annotations

import os
import sys

from .launcher import main

__all__: list[str] = []

if __name__ == "__main__":  # importing the module (the API listing does) must not launch
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Not sys.exit: the forwarders' threads sit in libzmq, which a normal exit would wait on.
    os._exit(code)
