"""Fill the warm pool as a Jupyter server starts, so that its first notebook's kernel is
pooled too.

A pool learns what to keep from a kernel start: a member must match the start's whole
container spec (:func:`~nbcontainers.kernels.pooled.pool_key`). With this module enabled as
a server extension and ``c.ContainerProvisioner.pool_warm = ["nbc-python"]``, the server
makes that first start itself, in the background as it starts: one kernel of each listed
kernelspec, started in ``root_dir`` with the server's own settings and shut down at once,
after which the pool fills before anyone opens a notebook. Enable it with
``c.ServerApp.jpserver_extensions = {"nbcontainers.kernels.warmup": True}``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from typing import Any

from jupyter_client.manager import AsyncKernelManager

from ..errors import did_you_mean
from .pool import kernel_pool
from .provisioner import ContainerProvisioner

__all__ = ["warm_pools"]

log = logging.getLogger("nbcontainers.pool")
READY_TIMEOUT = 300.0  # seconds to wait for the first members before saying nothing
_TASKS: set[asyncio.Task[list[str]]] = set()  # kept referenced until they finish


async def warm_pools(
    kernel_manager: Any, names: Sequence[str], root_dir: str, log: Any = log
) -> list[str]:
    """Start and stop one kernel of each kernelspec in ``names`` in ``root_dir``, configured
    as ``kernel_manager``'s kernels are; return those whose pool now fills. A kernelspec that
    cannot start is logged and skipped: warming never stops a server."""
    warmed = []
    known = set(kernel_manager.kernel_spec_manager.find_kernel_specs())
    for name in names:
        if name not in known:
            log.warning(
                "nbcontainers: cannot warm the kernel pool for %s: no such kernelspec.%s",
                name,
                did_you_mean(name, sorted(known)),
            )
            continue
        km = AsyncKernelManager(parent=kernel_manager, kernel_name=name, log=_quiet(log))
        try:
            # As a session start does: the server's environment and a session name.
            await km.start_kernel(cwd=root_dir, env={**os.environ, "JPY_SESSION_NAME": ""})
        except Exception as exc:  # a missing kernelspec, engine or image: say so, go on
            log.warning("nbcontainers: cannot warm the kernel pool for %s: %s", name, exc)
            continue
        size = getattr(km.provisioner, "pool_size", 0)
        await km.shutdown_kernel(now=True)
        if not size:
            log.warning(
                "nbcontainers: pool_warm lists %s, but its pool_size is 0: nothing to fill", name
            )
            continue
        warmed.append(name)
    if warmed:
        ready: bool = await asyncio.to_thread(kernel_pool().wait_ready, 1, READY_TIMEOUT)
        if ready:
            log.info("nbcontainers: kernel pool ready for %s", ", ".join(warmed))
    return warmed


def _quiet(log: Any) -> logging.Logger:
    """A logger for the warming starts: their lines go to ``log``, but for a failed start's
    traceback (jupyter_client logs one): the warning above says what failed, in one line."""
    quiet = logging.getLogger("nbcontainers.warmup")
    if isinstance(log, logging.Logger) and quiet.parent is not log:
        quiet.parent = log
    if not any(isinstance(f, _NoTraceback) for f in quiet.filters):
        quiet.addFilter(_NoTraceback())
    return quiet


class _NoTraceback(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.exc_info is None


def _load_jupyter_server_extension(serverapp: Any) -> None:
    """Send nbcontainers' own log lines (the pool's) to the server's log, as the server does
    for tornado's; the warming itself starts with the server."""
    ours = logging.getLogger("nbcontainers")
    ours.parent = serverapp.log
    ours.setLevel(serverapp.log.level)


async def _start_jupyter_server_extension(serverapp: Any) -> None:
    """Warm the pools named by ``c.ContainerProvisioner.pool_warm`` in the background: the
    server answers at once, and a notebook opened meanwhile starts cold as it would anyway."""
    # Read as a kernel's provisioner reads its settings (the command line's forms included).
    names = list(ContainerProvisioner(config=serverapp.config).pool_warm)
    if not names:
        return
    task = asyncio.ensure_future(
        warm_pools(serverapp.kernel_manager, names, str(serverapp.root_dir), serverapp.log)
    )
    _TASKS.add(task)
    task.add_done_callback(_TASKS.discard)
