"""Kernel containers of this process that are done when it exits: removed by an exit hook.

When a client exits without a shutdown handshake (``jupyter console``'s ``exit`` only asks
the kernel to quit), nothing else would remove its container. Kernels still running are left
for re-adoption by a restarted server, or for ``nbcontainers gc``.
"""

from __future__ import annotations

import atexit
import shutil
import time
import weakref
from pathlib import Path
from typing import Any, Protocol

from ..runtimes.base import ContainerRuntime, ContainerState

__all__ = ["Watched", "remove_when_finished_at_exit"]


class Watched(Protocol):
    """What the hook needs of a provisioner."""

    container_id: str | None
    private_dir: Path | None

    @property
    def runtime(self) -> ContainerRuntime: ...

    @property
    def log(self) -> Any: ...

    def note_exit(self, state: ContainerState) -> None: ...


# Weak: a provisioner that Jupyter has dropped needs no cleanup from us.
_WATCHED: weakref.WeakSet[Any] = weakref.WeakSet()
_REGISTERED = False


def remove_when_finished_at_exit(prov: Watched) -> None:
    """Remove ``prov``'s container at interpreter exit if its kernel has exited by then."""
    global _REGISTERED
    if not _REGISTERED:
        atexit.register(_remove_finished)
        _REGISTERED = True
    _WATCHED.add(prov)


def _remove_finished() -> None:
    deadline = time.monotonic() + 2.0  # for all of them together: exit must stay quick
    for prov in list(_WATCHED):
        cid = prov.container_id
        if cid is None:
            continue
        try:
            prov.runtime.wait(cid, timeout=max(0.1, deadline - time.monotonic()))
            state = prov.runtime.state(cid)
            if state is not None and not state.running:
                if state.exit_code:  # a clean exit after a client's shutdown is no crash
                    prov.note_exit(state)
                prov.runtime.remove(cid)
                if prov.private_dir is not None:
                    shutil.rmtree(prov.private_dir, ignore_errors=True)
        except Exception as exc:  # the engine may be gone too; never fail interpreter exit
            prov.log.debug("exit cleanup of %s failed: %s", cid[:12], exc)
