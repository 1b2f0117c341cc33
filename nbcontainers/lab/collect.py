"""The user's container kernels as the endpoint lists them: the owner's containers from every
runtime this server uses, joined with the server's own kernels and notebooks, with resource
samples taken in worker threads and kept for a moment.

Sampling is driven by requests: an engine's stats call takes about a second, so each list
returns the latest samples and starts fresh ones for those older than :data:`FRESH`, and a
server nobody asks costs nothing. Only :mod:`nbcontainers.runtimes` is spoken to, never an
engine's CLI. Records of kernels that died (an OOM kill, mostly) are kept a while from the
kernel restarter's callbacks, which run before the restart removes the dead container.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from ..kernels.identity import Host
from ..kernels.policy import POLICY_FILE, load_policy
from ..kernels.pooled import POOL_ROLE
from ..kernels.provisioner import ContainerProvisioner
from ..labels import KERNEL_ID, OWNER, ROLE, SERVER_HOST, SERVER_PID
from ..runtimes import ContainerRuntime, ContainerState, ContainerStats, EngineFacts
from .gpus import container_gpus
from .records import (
    GPUFigures,
    KernelRecord,
    ServerKernel,
    host_memory,
    kernel_record,
    oom_advice,
)

__all__ = ["FRESH", "IDLE_FRESH", "SHARED", "Collector", "Found"]

FRESH = 3.0  # seconds a sample stays current (the front end asks every 2 s)
# A kernel that has run nothing for ACTIVE_FOR seconds is sampled every IDLE_FRESH: an idle
# kernel's figures hardly move, and sampling 10 of them every 3 s was most of the polling cost.
ACTIVE_FOR = 30.0
IDLE_FRESH = 15.0
FIRST_WAIT = 3.0  # how long a list waits for a container's first sample
KEEP_ENDED = 600.0  # seconds a dead kernel's record stays listed
WORKERS = 4
SHARED = 1.5  # seconds a finished list answers other requests (tabs, scripts) too


@dataclass
class Sample:
    stats: ContainerStats | None
    gpus: list[GPUFigures] | None
    at: float


@dataclass(frozen=True)
class Found:
    """One of the owner's containers and where it came from."""

    state: ContainerState
    runtime: ContainerRuntime
    known: ServerKernel | None  # this server's kernel running in it
    parent: ServerKernel | None  # the local kernel relaying to it


def _recently_active(kernel: Any, now: datetime) -> bool:
    """Whether a Jupyter kernel is busy or was within :data:`ACTIVE_FOR` seconds (its
    manager's ``execution_state`` and ``last_activity``); True where it can't tell."""
    if getattr(kernel, "execution_state", None) == "busy":
        return True
    last = getattr(kernel, "last_activity", None)
    if not isinstance(last, datetime):
        return True
    try:
        return (now - last).total_seconds() < ACTIVE_FOR
    except TypeError:  # a naive timestamp
        return True


def _kernels_now(km: Any) -> tuple[tuple[str, str | None], ...]:
    """A server's kernels and their containers, as the key of the shared list."""
    provisioners = {k: getattr(km.get_kernel(k), "provisioner", None) for k in km.list_kernel_ids()}
    return tuple(sorted((k, getattr(p, "container_id", None)) for k, p in provisioners.items()))


class Collector:
    """The owner's container kernels for one Jupyter server (``serverapp``)."""

    def __init__(
        self, serverapp: Any, default_runtime: Callable[[], ContainerRuntime] | None = None
    ) -> None:
        self.serverapp = serverapp
        self.owner = Host.current().owner
        # Made on first use: no engine is asked anything until someone lists kernels.
        self.default_runtime = default_runtime
        self.samples: dict[str, Sample] = {}
        self.pending: dict[str, asyncio.Future[Sample]] = {}
        self.facts: dict[int, EngineFacts | None] = {}
        self.digests: dict[tuple[int, str], str | None] = {}
        self.ended: dict[str, KernelRecord] = {}  # container id -> record of a dead kernel
        self.watched: set[str] = set()
        self.notebooks: dict[str, str | None] = {}  # this server's kernel id -> notebook path
        self.active: set[str] = set()  # this server's kernels that ran a cell lately
        self.host = host_memory()
        self.pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="nbc-lab")
        self.listing: asyncio.Future[list[KernelRecord]] | None = None  # the latest list
        self.listed_at = 0.0  # when it was finished (time.monotonic())
        self.listed_kernels: tuple[tuple[str, str | None], ...] = ()  # this server's, then

    # -- this server's side -----------------------------------------------------------------

    async def server_kernels(self) -> tuple[dict[str, ServerKernel], dict[int, ServerKernel]]:
        """This server's container kernels by container id, and its local kernels by pid
        (a ``%container use`` container is labelled with its local kernel's pid)."""
        km = self.serverapp.kernel_manager
        notebooks: dict[str, str] = {}
        try:
            for session in await self.serverapp.session_manager.list_sessions():
                notebooks[session["kernel"]["id"]] = session.get("path") or ""
        except Exception:  # no session manager (a bare server): kernels without notebooks
            pass
        by_container: dict[str, ServerKernel] = {}
        by_pid: dict[int, ServerKernel] = {}
        active: set[str] = set()
        now = datetime.now(timezone.utc)
        for kernel_id in list(km.list_kernel_ids()):
            kernel = km.get_kernel(kernel_id)
            if _recently_active(kernel, now):
                active.add(kernel_id)
            prov = getattr(kernel, "provisioner", None)
            entry: ServerKernel = {"kernel_id": kernel_id, "notebook": notebooks.get(kernel_id)}
            self.notebooks[kernel_id] = notebooks.get(kernel_id)
            if isinstance(prov, ContainerProvisioner):
                self.watch(kernel_id, kernel, prov)
                if prov.container_id:
                    entry["mem_limit"], entry["cpus"] = prov.mem_limit, prov.cpus
                    by_container[prov.container_id] = entry
            elif isinstance(getattr(prov, "pid", None), int):
                by_pid[prov.pid] = entry  # type: ignore[union-attr]
        self.active = active
        return by_container, by_pid

    def freshness(self, f: Found) -> float:
        """How old ``f``'s sample may get: :data:`FRESH` while its kernel (or the local kernel
        relaying to it) runs cells or ran one lately, :data:`IDLE_FRESH` once it is idle, and
        for an idle pool member. A container of another server of the user's: as asked."""
        kernel = f.known or f.parent
        if kernel is not None:
            return FRESH if kernel["kernel_id"] in self.active else IDLE_FRESH
        return IDLE_FRESH if f.state.labels.get(ROLE) == POOL_ROLE else FRESH

    def runtimes(self) -> list[ContainerRuntime]:
        """Every runtime this server's kernels use, and the default one, each once."""
        found: dict[int, ContainerRuntime] = {}
        km = self.serverapp.kernel_manager
        for kernel_id in list(km.list_kernel_ids()):
            prov = getattr(km.get_kernel(kernel_id), "provisioner", None)
            if isinstance(prov, ContainerProvisioner):
                found.setdefault(id(prov.runtime), prov.runtime)
        if self.default_runtime is not None:
            try:
                runtime = self.default_runtime()
            except Exception as exc:  # no engine configured here: only the kernels' runtimes
                self.serverapp.log.debug("nbcontainers: no default runtime: %s", exc)
            else:
                found.setdefault(id(runtime), runtime)
        return list(found.values())

    # -- the engine's side ------------------------------------------------------------------

    def _owned(self, runtime: ContainerRuntime) -> list[ContainerState]:
        # The label filter runs in the engine; the owner check again here, so that a runtime
        # that ignored a filter could still never hand over another user's container.
        states = runtime.list({OWNER: self.owner, KERNEL_ID: None})
        return [s for s in states if s.labels.get(OWNER) == self.owner]

    def _facts(self, runtime: ContainerRuntime) -> EngineFacts | None:
        if id(runtime) not in self.facts:
            try:
                self.facts[id(runtime)] = runtime.ping()
            except Exception:
                return None
        return self.facts[id(runtime)]

    def _digest(self, runtime: ContainerRuntime, state: ContainerState) -> str | None:
        key = (id(runtime), state.image_id or state.image)
        if key not in self.digests:
            try:
                info = runtime.image_info(key[1])
            except Exception:  # a cluster's images live on its nodes
                info = None
            if info is None:
                self.digests[key] = state.image_id or None
            else:
                digests = [d.partition("@")[2] for d in info.repo_digests if "@" in d]
                self.digests[key] = digests[0] if digests else info.id
        return self.digests[key]

    def _sample(self, runtime: ContainerRuntime, state: ContainerState) -> Sample:
        try:
            stats: ContainerStats | None = runtime.stats(state.id)
        except Exception:
            stats = None
        old = self.samples.get(state.id)
        # A container without GPUs stays without: ask NVML again only where there were some.
        gpus = old.gpus if old is not None and old.gpus == [] else container_gpus(runtime, state.id)
        return Sample(stats, gpus, time.monotonic())

    async def find(self) -> list[Found]:
        """The owner's containers, joined with this server's kernels."""
        by_container, by_pid = await self.server_kernels()
        found: list[Found] = []
        for runtime in self.runtimes():
            try:
                # Not on the samplers' pool: a list must not queue behind ~1 s stats calls.
                states = await asyncio.to_thread(self._owned, runtime)
            except Exception as exc:
                self.serverapp.log.warning("nbcontainers: can't list kernels: %s", exc)
                continue
            for state in states:
                parent = None
                if state.id not in by_container and state.labels.get(SERVER_HOST) == (
                    socket.gethostname()
                ):
                    pid = state.labels.get(SERVER_PID, "")
                    parent = by_pid.get(int(pid)) if pid.isdigit() else None
                found.append(Found(state, runtime, by_container.get(state.id), parent))
        return found

    async def records(self) -> list[KernelRecord]:
        """The endpoint's list: live containers with their latest samples, then kept records
        of kernels that died. Requests within :data:`SHARED` seconds of a finished list, or
        while one is being made, get that list: several tabs or scripts polling the same
        server ask the engines once."""
        listing, kernels = self.listing, _kernels_now(self.serverapp.kernel_manager)
        aged = listing is not None and listing.done() and time.monotonic() > self.listed_at + SHARED
        # A kernel started or shut down since that list: list afresh (a script that starts a
        # kernel and then lists must find it).
        if listing is None or aged or kernels != self.listed_kernels:
            self.listed_kernels = kernels
            listing = self.listing = asyncio.ensure_future(self._records())

            def finished(_: asyncio.Future[list[KernelRecord]]) -> None:
                self.listed_at = time.monotonic()

            listing.add_done_callback(finished)
        # Shielded: one client hanging up must not cancel the list the others wait for.
        return list(await asyncio.shield(listing))

    def invalidate(self) -> None:
        """The next request lists afresh (after a stop, say)."""
        if self.listing is not None and self.listing.done():
            self.listing = None

    async def _records(self) -> list[KernelRecord]:
        found = await self.find()
        loop = asyncio.get_running_loop()
        waits = []
        now = time.monotonic()
        for f in found:
            if not f.state.running:
                continue
            sample = self.samples.get(f.state.id)
            stale = sample is None or now - sample.at > self.freshness(f)
            if stale and f.state.id not in self.pending:
                self.pending[f.state.id] = self._start_sample(loop, f)
            if sample is None:
                waits.append(self.pending[f.state.id])
        if waits:
            await asyncio.wait(waits, timeout=FIRST_WAIT)
        out = await asyncio.to_thread(lambda: [self._record(f) for f in found])
        self._forget({f.state.id for f in found})
        cutoff = time.time() - KEEP_ENDED
        for container_id, record in list(self.ended.items()):
            if (record["ended_at"] or 0) < cutoff:
                del self.ended[container_id]
            else:
                out.append(record)
        return out

    def _start_sample(self, loop: asyncio.AbstractEventLoop, f: Found) -> asyncio.Future[Sample]:
        future = loop.run_in_executor(self.pool, self._sample, f.runtime, f.state)

        def done(fut: asyncio.Future[Sample]) -> None:
            self.pending.pop(f.state.id, None)
            if not fut.cancelled() and fut.exception() is None:
                self.samples[f.state.id] = fut.result()

        future.add_done_callback(done)
        return future

    def _record(self, f: Found) -> KernelRecord:
        sample = self.samples.get(f.state.id)
        return self._advised(
            kernel_record(
                f.state,
                sample.stats if sample else None,
                facts=self._facts(f.runtime),
                digest=self._digest(f.runtime, f.state),
                gpus=sample.gpus if sample and f.state.running else None,
                known=f.known,
                parent=f.parent,
                host=self.host,
            )
        )

    @staticmethod
    def _advised(record: KernelRecord) -> KernelRecord:
        """An OOM-killed kernel's record says how to get more memory."""
        if record["oom_killed"]:
            try:
                cap = load_policy().max_mem_limit
            except Exception:  # a broken policy stops kernel starts; here it only goes unsaid
                cap = ""
            record["advice"] = oom_advice(record["relayed"], cap, str(POLICY_FILE))
        return record

    def _forget(self, present: Iterable[str]) -> None:
        keep = set(present)
        for container_id in [c for c in self.samples if c not in keep]:
            del self.samples[container_id]

    # -- kernels that die -------------------------------------------------------------------

    def watch(self, kernel_id: str, kernel: Any, prov: ContainerProvisioner) -> None:
        """Keep a record of this kernel's container when the restarter finds it dead."""
        if kernel_id in self.watched:
            return
        self.watched.add(kernel_id)

        def died() -> None:
            self.note_death(kernel_id, prov)

        for event in ("restart", "dead"):
            kernel.add_restart_callback(died, event)

    def note_death(self, kernel_id: str, prov: ContainerProvisioner) -> None:
        """Called by the restarter on the event loop, before the restart removes the dead
        container: one quick state call keeps its exit code and OOM flag."""
        if not prov.container_id:
            return
        try:
            state = prov.runtime.state(prov.container_id)
        except Exception:
            state = None
        if state is None or state.running:
            return
        known: ServerKernel = {
            "kernel_id": kernel_id,
            "notebook": self.notebooks.get(kernel_id),
            "mem_limit": prov.mem_limit,
            "cpus": prov.cpus,
        }
        sample = self.samples.get(state.id)
        record = kernel_record(
            state,
            sample.stats if sample else None,
            facts=self.facts.get(id(prov.runtime)),
            digest=self.digests.get((id(prov.runtime), state.image_id or state.image)),
            gpus=None,
            known=known,
            parent=None,
            host=self.host,
        )
        record["ended_at"] = time.time()
        self.ended[state.id] = self._advised(record)  # by container: each death is listed

    def lookup(self, records: Iterable[KernelRecord], key: str) -> KernelRecord | None:
        """The live record whose kernel id or container id (or its 12-character short form)
        is ``key``; None for anything not the owner's."""
        live = [r for r in records if r["ended_at"] is None]
        for r in live:
            if key in (r["kernel_id"], r["container_id"]) or (
                len(key) >= 12 and r["container_id"].startswith(key)
            ):
                return r
        return None

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
