"""Fill the warm pool as a Jupyter server starts, so that its first notebook's kernel is
pooled too.

A pool learns what to keep from a kernel start: a member must match the start's whole
container spec (:func:`~nbcontainers.kernels.pooled.pool_key`). With this module enabled as
a server extension and ``c.ContainerProvisioner.pool_warm = ["nbc-python"]``, the server
makes that first start itself, in the background as it starts: one kernel of each listed
kernelspec, started in ``root_dir`` with the server's own settings and shut down at once,
after which the pool fills before anyone opens a notebook. Enable it with
``c.ServerApp.jpserver_extensions = {"nbcontainers.kernels.warmup": True}``.

:func:`warm` is the one warming loop: the server's kernelspecs go through it, and so do a
notebook's ``%container`` kernels (``NBCONTAINERS_POOL_WARM``, :mod:`nbcontainers.relay.session`),
from a thread (:func:`warm_in_background`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from jupyter_client.manager import AsyncKernelManager

from ..errors import did_you_mean
from .pool import kernel_pool
from .provisioner import ContainerProvisioner

# The public name (users' configs name this module); warm, warm_in_background and WarmStart
# are the package's own, for nbcontainers.relay.session.
__all__ = ["warm_pools"]

log = logging.getLogger("nbcontainers.pool")
READY_TIMEOUT = 300.0  # seconds to wait for the first members before saying nothing
_TASKS: set[asyncio.Task[list[str]]] = set()  # kept referenced until they finish

# One warming start: start one kernel and shut it down at once; return its pool size, or
# None to skip it without a word (a notebook's image with no pool, or not on the engine).
WarmStart = Callable[[], Awaitable[int | None]]


async def warm(
    starts: Sequence[tuple[str, WarmStart]], log: Any = log, wait: bool = True
) -> list[str]:
    """The one way pools are warmed, for a server (:func:`warm_pools`) and for a notebook's
    ``%container`` kernels alike: each of ``starts`` in turn, by name; return the names whose
    pool now fills, after waiting (``wait``) until the first member is ready. A start that
    fails is logged and skipped: warming never stops a server or a notebook."""
    warmed = []
    for name, start in starts:
        try:
            size = await start()
        except Exception as exc:  # a missing kernelspec, engine or image: say so, go on
            log.warning("nbcontainers: cannot warm the kernel pool for %s: %s", name, exc)
            continue
        if size is None:
            continue
        if not size:
            log.warning(
                "nbcontainers: pool_warm lists %s, but its pool_size is 0: nothing to fill", name
            )
            continue
        warmed.append(name)
    if warmed and wait:
        ready: bool = await asyncio.to_thread(kernel_pool().wait_ready, 1, READY_TIMEOUT)
        if ready:
            log.info("nbcontainers: kernel pool ready for %s", ", ".join(warmed))
    return warmed


def warm_in_background(
    starts: Sequence[tuple[str, Callable[[], int | None]]],
    done: Callable[[], None] | None = None,
    log: Any = log,
) -> threading.Thread:
    """:func:`warm` from a daemon thread for blocking ``starts`` (a notebook's kernels, made
    by jupyter_client's blocking manager), without waiting for the members; then ``done``."""

    def each(start: Callable[[], int | None]) -> WarmStart:
        return lambda: asyncio.to_thread(start)

    def fill() -> None:
        try:
            asyncio.run(warm([(name, each(start)) for name, start in starts], log, wait=False))
        finally:
            if done is not None:
                done()

    thread = threading.Thread(target=fill, name="nbc-pool-warm", daemon=True)
    thread.start()
    return thread


async def warm_pools(
    kernel_manager: Any, names: Sequence[str], root_dir: str, log: Any = log
) -> list[str]:
    """Start and stop one kernel of each kernelspec in ``names`` in ``root_dir``, configured
    as ``kernel_manager``'s kernels are; return those whose pool now fills. A kernelspec that
    cannot start is logged and skipped: warming never stops a server."""
    known = set(kernel_manager.kernel_spec_manager.find_kernel_specs())
    starts: list[tuple[str, WarmStart]] = []
    for name in names:
        if name not in known:
            log.warning(
                "nbcontainers: cannot warm the kernel pool for %s: no such kernelspec.%s",
                name,
                did_you_mean(name, sorted(known)),
            )
            continue
        starts.append((name, _server_start(kernel_manager, name, root_dir, log)))
    return await warm(starts, log)


def _server_start(kernel_manager: Any, name: str, root_dir: str, log: Any) -> WarmStart:
    async def start() -> int:
        km = AsyncKernelManager(parent=kernel_manager, kernel_name=name, log=_quiet(log))
        # As a session start does: the server's environment and a session name.
        await km.start_kernel(cwd=root_dir, env={**os.environ, "JPY_SESSION_NAME": ""})
        size = int(getattr(km.provisioner, "pool_size", 0))
        await km.shutdown_kernel(now=True)
        return size

    return start


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
