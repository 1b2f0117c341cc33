"""The warm pool: kernel containers started before anyone asks, handed out once each.

:func:`start_from_pool` is the provisioner's one call: it hands a ready member
(:mod:`~nbcontainers.kernels.pooled`) to this start, or returns None for a cold start, and
from then on keeps the pool for that key full from one background thread. A pool that
cannot be filled (image missing, engine down) says so once in the log and leaves starts
cold; idle members (and those still starting) are removed at interpreter exit, and by
``nbcontainers gc`` when their server died without one. Idle members together stay under a
memory cap, measured on the first one where the engine can measure it.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from ..runtimes.base import ContainerRuntime, ContainerSpec
from .connection import PrivateDir
from .plan import LaunchPlan
from .pooled import Pooled, discard, hand_over, pool_key, release_pooled, start_member

__all__ = ["KernelPool", "PoolRequest", "kernel_pool", "start_from_pool"]

RETRY_AFTER = 60.0  # seconds a pool that failed to fill stays cold before it tries again
RECOUNT_AFTER = 2.0  # seconds a pool held back by the user's kernel count waits to count again
DRAIN_WAIT = 15.0  # seconds an exiting server waits for a member still starting

log = logging.getLogger("nbcontainers.pool")


@dataclass(frozen=True)
class PoolRequest:
    """One kernel start that may take a pooled container, and how to start more like it.

    ``spec`` and ``plan`` are the cold start's; the paths of the plan's private folder in
    ``spec`` are swapped for each member's own. ``prepare`` writes a member's private files
    (pip.conf, ownership) before its container starts. ``connection`` is the start's
    connection info as the kernel in the container reads it. ``admit`` is held around the
    start of each member (the policy's kernel count, under the user's lock): a ConfigError
    there holds the pool back until a kernel ends.
    """

    runtime: ContainerRuntime
    spec: ContainerSpec
    plan: LaunchPlan
    size: int
    max_memory: int  # bytes all idle members together may use; 0: no cap
    prepare: Callable[[PrivateDir], None]
    connection: Mapping[str, Any]
    admit: Callable[[], AbstractContextManager[Any]] = nullcontext

    @property
    def image_name(self) -> str:
        return self.plan.image.name


def start_from_pool(request: PoolRequest) -> Pooled | None:
    """Hand a ready pooled container this start (None: there is none, start cold); from now
    on keep ``request.size`` members like it ready."""
    plan, spec = request.plan, request.spec
    key = pool_key(spec, plan.private_dir, request.connection)
    if key is None:
        return None
    pool = kernel_pool()
    member = pool.take(key)
    pool.want(key, request)
    if member is None:
        log.debug("nbcontainers: no pooled %s kernel ready: cold start", request.image_name)
        return None
    try:
        hand_over(
            member,
            plan.private_dir.sockets,
            request.connection,
            plan.working_dir,
            spec.env,
            spec.command,
        )
    except OSError as exc:  # its container died while idle: this start goes cold
        log.warning("nbcontainers: pooled kernel %s unusable (%s); cold start", member.key, exc)
        discard(request.runtime, member)
        release_pooled(member, plan.private_dir.path)
        return None
    log.info(
        "nbcontainers: kernel from the warm pool: container %s (%s)",
        member.container_id[:12],
        request.image_name,
    )
    return member


@dataclass
class _Slot:
    recipe: PoolRequest
    ready: list[Pooled] = field(default_factory=list)
    starting: int = 0
    failed_until: float = 0.0
    cost: int = 0  # bytes one idle member uses, measured on the first one
    measured: bool = False


class KernelPool:
    """This process's pools, one per :func:`pool_key`; filled by one background thread."""

    def __init__(self) -> None:
        self._slots: dict[str, _Slot] = {}
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._closed = False
        self._capped_said = False
        self._unmeasured_said = False
        self._held_said = False
        self._exit_hook = False

    def take(self, key: str) -> Pooled | None:
        """A ready member for ``key``, claimed for good; None when there is none."""
        while True:
            with self._lock:
                slot = self._slots.get(key)
                if slot is None or not slot.ready:
                    return None
                member = slot.ready.pop(0)
                self._wake.notify()  # refill
            if member.claim():
                return member  # else another process claimed it first

    def want(self, key: str, recipe: PoolRequest) -> None:
        """Keep ``recipe.size`` members of ``key`` ready from now on."""
        with self._lock:
            if self._closed:
                return
            slot = self._slots.get(key)
            if slot is None:
                self._slots[key] = _Slot(recipe)
            else:
                slot.recipe = recipe
            if self._thread is None:
                self._thread = threading.Thread(target=self._fill, name="nbc-pool", daemon=True)
                self._thread.start()
                if not self._exit_hook:
                    atexit.register(self.drain)
                    self._exit_hook = True
            self._wake.notify()

    @property
    def closed(self) -> bool:
        """Has :meth:`drain` stopped this pool (until :meth:`reopen`)?"""
        return self._closed

    def idle(self) -> dict[str, int]:
        """Ready members per image name."""
        with self._lock:
            counts: dict[str, int] = {}
            for slot in self._slots.values():
                name = slot.recipe.image_name
                counts[name] = counts.get(name, 0) + len(slot.ready)
            return counts

    def has_ready(self, image_ref: str) -> bool:
        """Does a ready member run ``image_ref`` (so the engine has that image)?"""
        with self._lock:
            return any(s.ready and s.recipe.spec.image == image_ref for s in self._slots.values())

    def wait_ready(self, count: int, timeout: float, key: str | None = None) -> bool:
        """Wait until ``count`` members of ``key`` (default: of every pool; true at once when
        there is none) are ready."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                slots = [self._slots[key]] if key in self._slots else []
                if key is None:
                    slots = list(self._slots.values())
                    if not slots:
                        return True
                if slots and all(len(s.ready) >= count for s in slots):
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._wake.wait(min(left, 0.05))

    def drain(self) -> None:
        """Remove every idle member and stop filling (server shutdown; atexit). A member
        still starting stops (see :func:`_start`) and is removed by the filling thread,
        waited for up to DRAIN_WAIT s."""
        with self._lock:
            self._closed = True
            members = [(s.recipe.runtime, m) for s in self._slots.values() for m in s.ready]
            for slot in self._slots.values():
                slot.ready.clear()
            self._wake.notify_all()
            filling = self._thread
        for runtime, member in members:
            discard(runtime, member)
        if filling is not None and filling is not threading.current_thread():
            filling.join(timeout=DRAIN_WAIT)

    def reopen(self) -> None:
        """Fill again after :meth:`drain` (tests)."""
        with self._lock:
            self._closed = False
            self._slots.clear()

    # -- the filling thread -------------------------------------------------------------------

    def _next(self) -> tuple[str, _Slot] | None:
        now = time.monotonic()
        idle = sum(len(s.ready) + s.starting for s in self._slots.values())
        for key, slot in self._slots.items():
            recipe = slot.recipe
            if len(slot.ready) + slot.starting >= recipe.size or slot.failed_until > now:
                continue
            if recipe.max_memory and slot.cost and (idle + 1) * slot.cost > recipe.max_memory:
                if not self._capped_said:
                    self._capped_said = True
                    log.warning(
                        "nbcontainers: kernel pool capped at %d idle kernels (%.0f MiB each, "
                        "pool_max_memory %.0f MiB)",
                        idle,
                        slot.cost / 2**20,
                        recipe.max_memory / 2**20,
                    )
                continue
            return key, slot
        return None

    def _fill(self) -> None:
        while True:
            with self._lock:
                job = self._next()
                while job is None and not self._closed:
                    self._wake.wait(timeout=5.0)  # also retries pools whose failure expired
                    job = self._next()
                if self._closed:
                    self._thread = None  # reopen() may start another
                    return
                assert job is not None
                key, slot = job
                slot.starting += 1
            member = None
            try:
                member = _start(key, slot.recipe)
                if not slot.measured and slot.recipe.max_memory:
                    self._measure(slot, member)
            except ConfigError as exc:  # the user runs the most kernels allowed: wait
                if not self._held_said:
                    self._held_said = True
                    log.info("nbcontainers: the kernel pool waits: %s", str(exc).split(". ")[0])
                slot.failed_until = time.monotonic() + RECOUNT_AFTER
            except Exception as exc:  # any failure leaves starts cold, never failed
                if not self._closed:  # else it stopped because the pool closed
                    log.warning(
                        "nbcontainers: cannot fill the kernel pool for %s (%s); kernels start cold",
                        slot.recipe.image_name or key,
                        str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                    )
                    slot.failed_until = time.monotonic() + RETRY_AFTER
            with self._lock:
                slot.starting -= 1
                keep = not self._closed and self._slots.get(key) is slot
                if member is not None and keep:
                    slot.ready.append(member)
                self._wake.notify_all()
            if member is not None and not keep:  # started for a pool that closed meanwhile
                discard(slot.recipe.runtime, member)

    def _measure(self, slot: _Slot, member: Pooled) -> None:
        """What one idle member costs; an engine that cannot tell leaves the pool uncapped."""
        used = slot.recipe.runtime.stats(member.container_id).memory_used
        slot.cost, slot.measured = used or 0, True
        if used is None and not self._unmeasured_said:
            self._unmeasured_said = True
            log.warning(
                "nbcontainers: this engine cannot measure an idle pooled kernel's memory, so "
                "pool_max_memory is not applied; pool_size alone bounds the pool"
            )


def _start(key: str, request: PoolRequest) -> Pooled:
    """One member for ``request``; it stops, removed, once the pool closes (a drain)."""
    return start_member(
        request.runtime,
        request.spec,
        request.plan.private_dir,
        request.prepare,
        key,
        request.image_name,
        request.connection,
        cancelled=lambda: kernel_pool().closed,
        admit=request.admit,
    )


_POOL: KernelPool | None = None


def kernel_pool() -> KernelPool:
    """This process's pool, made on first use."""
    global _POOL
    if _POOL is None:
        _POOL = KernelPool()
    return _POOL
