"""`python -m nbcontainers.launch`: the container kernel for frontends that run a kernelspec's
argv themselves (VS Code, Zed, nteract, jupyter_client's LocalProvisioner).

:mod:`.launcher` (standard library and pyzmq only) asks this user's start service
(:mod:`.service`, found or started by :mod:`.client`) for the kernel's container, forwards
the connection file's ports to the kernel's Unix sockets (:mod:`.proxy`) and stands in front
of it; :mod:`.settings` is what the service starts it with (Jupyter config files and the
kernelspec's config); :mod:`.reaper` removes the container when launcher and service are
both gone.
"""

from __future__ import annotations

from .launcher import main

__all__ = ["main"]
