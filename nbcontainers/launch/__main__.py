"""Run the kernelspec launcher: ``python -m nbcontainers.launch … -f FILE -- KERNEL COMMAND``."""

import sys

from .launcher import main

sys.exit(main())
