"""Starting nbc-python kernels as Jupyter Server does for one notebook, and asking them
:data:`~.pool_alike.SEEN`: what the pool-equality tests compare (pool_alike.py itself stays
standard library only, for the Podman probe that runs it as a script)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from jupyter_client.manager import KernelManager

from ..drive import connected, run
from .pool_alike import SEEN, seen_in


def start_nbc_python(cwd: Path, session: str, **config: Any) -> KernelManager:
    """An nbc-python kernel as Jupyter Server starts one for notebook ``session`` (the pool
    hands one out where it has it)."""
    km = KernelManager(kernel_name="nbc-python")
    km.kernel_spec.metadata["kernel_provisioner"]["config"].update(config)
    km.start_kernel(cwd=str(cwd), env={**os.environ, "JPY_SESSION_NAME": session})
    return km


def seen_by(km: KernelManager) -> dict[str, Any]:
    """What :data:`SEEN` prints in ``km``'s kernel."""
    with connected(km) as kc:
        out, reply = run(kc, SEEN)
    assert reply["status"] == "ok", out
    return seen_in(out)
