"""Cancelling a build on a Podman service: the service goes on building when its client is
stopped (podman#7558 for pulls; builds behave alike), so a cancelled build is ended there.

A build's steps run in buildah *working containers*, which the libpod API lists as external
containers in state "storage". A cancel ends the step's processes (they carry the working
container's short id as HOSTNAME) and removes the working containers the build made, so the
service's build fails instead of finishing and tagging its image later.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["cancel_on_service", "step_processes", "working_containers"]

SETTLE = 10.0  # seconds the service gets to give up a build whose containers are gone


def working_containers(api: Any) -> set[str]:
    """Ids of the buildah working containers the service holds now."""
    reply = api.get(
        f"{api.base_url}/v4.0.0/libpod/containers/json",
        params={"all": "true", "external": "true"},
    )
    if reply.status_code != 200:
        return set()
    return {str(row["Id"]) for row in reply.json() or () if row.get("State") == "storage"}


def _ppid_and_host(pid: str) -> tuple[str, str] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:  # gone, or another user's process
        return None
    ppid = stat.rsplit(")", 1)[1].split()[1]
    host = next((v[9:].decode() for v in environ.split(b"\0") if v.startswith(b"HOSTNAME=")), "")
    return ppid, host


def step_processes(container_ids: set[str]) -> list[int]:
    """Processes on this host running a step of those working containers, children too."""
    short = {cid[:12] for cid in container_ids}
    table = {
        pid: info for pid in os.listdir("/proc") if pid.isdigit() if (info := _ppid_and_host(pid))
    }
    chosen = {pid for pid, (_, host) in table.items() if host in short}
    grew = True
    while grew:  # a step may clear its environment: take the children of chosen ones too
        more = {pid for pid, (ppid, _) in table.items() if ppid in chosen} - chosen
        chosen |= more
        grew = bool(more)
    return sorted(int(pid) for pid in chosen)


@contextmanager
def cancel_on_service(api: Any, local: bool) -> Iterator[None]:
    """Around a remote build: if anything interrupts it, end what the build left running on
    the service. ``local``: the service runs on this host, so its step processes can be
    ended here (a remote service's can't; its working containers are still removed)."""
    before = working_containers(api)
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):  # cleanup must not hide why the build ended
            _cancel(api, before, local)
        raise


def _cancel(api: Any, before: set[str], local: bool) -> None:
    made = working_containers(api) - before
    killed = step_processes(made) if local else []
    for pid in killed:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    # A failed step makes the service end the build and remove its working containers; wait
    # for that, so the caller's check of the tag comes after the service gave up.
    deadline = time.monotonic() + (SETTLE if killed else 0)
    left = made
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = working_containers(api) & made
    for cid in left:  # between steps, or a remote service: take them away from the build
        api.delete(f"{api.base_url}/v4.0.0/libpod/containers/{cid}", params={"force": "true"})
