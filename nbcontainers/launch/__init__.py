"""`python -m nbcontainers.launch`: the container kernel for frontends that run a kernelspec's
argv themselves (VS Code, Zed, nteract, jupyter_client's LocalProvisioner).

:mod:`.launcher` starts and stands in front of the kernel's container; :mod:`.reaper`
removes it when the launcher dies, SIGKILL included.
"""

from __future__ import annotations

from .launcher import main

__all__ = ["main"]
