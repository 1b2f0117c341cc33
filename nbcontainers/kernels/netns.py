"""Shared network namespaces: one small holder container per owner that kernel containers join.

Creating a network namespace with its veth pair is about half of a container's start time
on Docker's bridge network. Joining a holder's namespace (`network_mode=container:<id>`)
skips that, while kernels keep outbound network and stay off the host's loopback. Kernels
of one owner share the namespace, as local kernels share the host's.

A holder that has exited (a reboot, the OOM killer, an admin ending the user's engine) is
healed here, on the next kernel start: with it gone, so is the namespace of every container
joined to it, and the engine refuses to remove the holder while they exist ("has dependent
containers"). So that owner's ended kernels, pool members and holders, found by their labels,
are removed first; running containers, and anything of another owner, are never touched.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Collection

from ..errors import ContainerConflict, RuntimeFailure
from ..labels import KERNEL_ID, OWNER, ROLE, SERVER_HOST
from ..runtimes.base import LIMITS, ContainerRuntime, ContainerSpec, ContainerState

__all__ = ["HOLDER_ROLE", "clear_leftovers", "holder_name", "shared_netns"]

HOLDER_ROLE = "netns"
SETTLE_TIMEOUT = 10.0
# What an ended container reports. "created" only for one that has run before: Podman calls
# every container "created" again once it has reset its state (a reboot; ensure_service after
# a kill), while a "created" one that never ran is a start in flight (another kernel start may
# be joining the new holder this very moment).
ENDED = frozenset({"exited", "dead", "stopped", "configured"})


def holder_name(owner: str) -> str:
    """The holder's container name: one per owner, so concurrent starts meet on the name."""
    return "nbc-netns-" + (re.sub(r"[^a-zA-Z0-9_.-]", "-", owner) or "user")


def shared_netns(
    runtime: ContainerRuntime,
    owner: str,
    image_ref: str,
    user: str,
    enforced: Collection[str] = LIMITS,
) -> str:
    """Return ``container:<id>`` of the owner's running holder, starting one if needed.

    The holder only keeps the namespace alive: it runs ``sleep`` from the kernel's own image
    (present, since the kernel is about to start from it) as the kernel's user, with tiny
    memory and process limits where the engine can enforce them (``enforced``: its
    ``EngineFacts.limits``); they guard against a runaway holder, nobody asked for them.
    """
    name = holder_name(owner)
    state = _settled(runtime, name)
    if state is not None and state.status == "running":
        return f"container:{state.id}"
    if state is not None:  # exited (a reboot, an OOM kill): its namespace is gone with it
        clear_leftovers(runtime, owner)
        _remove_holder(runtime, state)
    spec = ContainerSpec(
        image=image_ref,
        command=("sleep", "infinity"),
        name=name,
        labels={ROLE: HOLDER_ROLE, OWNER: owner, SERVER_HOST: socket.gethostname()},
        user=user,
        network_mode="bridge",  # outbound network for the kernels, no published ports
        mem_limit="16m" if "memory" in enforced else None,
        pids_limit=4 if "pids" in enforced else None,
    )
    try:
        return f"container:{runtime.run(spec)}"
    except ContainerConflict:
        # Another kernel start (in this server or another) created it a moment ago: join that.
        state = _settled(runtime, name, taken=True)
        if state is None or state.status != "running":
            raise
        return f"container:{state.id}"


def clear_leftovers(runtime: ContainerRuntime, owner: str) -> list[str]:
    """Remove ``owner``'s ended kernel containers, pool members and network holders (what a
    dead engine leaves behind); return their names. Holders go last: the engine refuses to
    remove one while a container joined to it exists, even an exited one."""
    ended = [
        s
        for s in runtime.list({OWNER: owner})
        if _ended(s)
        and (KERNEL_ID in s.labels or ROLE in s.labels)
        and s.labels.get(OWNER) == owner  # the engine filtered; a second look costs nothing
    ]
    ended.sort(key=lambda s: s.labels.get(ROLE) == HOLDER_ROLE)
    for state in ended:
        if state.labels.get(ROLE) == HOLDER_ROLE:
            _remove_holder(runtime, state)
        else:
            runtime.remove(state.id)  # idempotent: one removed meanwhile by another start
    return [s.name for s in ended]


def _has_run(state: ContainerState) -> bool:
    return bool(state.started_at) and not state.started_at.startswith("0001-")  # Go's zero time


def _ended(state: ContainerState) -> bool:
    return state.status in ENDED or (state.status == "created" and _has_run(state))


def _remove_holder(runtime: ContainerRuntime, state: ContainerState) -> None:
    try:
        runtime.remove(state.id)
    except RuntimeFailure as exc:
        # Something still running was joined to it (the holder alone was killed): that
        # namespace lives on with them, and the name stays taken until they end.
        raise RuntimeFailure(
            f"The shared network holder {state.name} has ended, but containers still joined to "
            f"it keep it from being replaced ({exc}). Shut down your running container kernels "
            "(or run `nbcontainers gc`), then start the kernel again."
        ) from None


def _settled(runtime: ContainerRuntime, name: str, taken: bool = False) -> ContainerState | None:
    """The holder's state once it is running or has ended: another start may have created
    it a moment ago and not started it yet (created is not dead: kernels may be joining).
    ``taken``: the engine refused the name, so the holder exists even while inspecting it
    still finds nothing (Docker reserves a name before the container can be inspected)."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    state = runtime.state(name)
    while (
        (state is None and taken)
        or (state is not None and state.status == "created" and not _has_run(state))
    ) and time.monotonic() < deadline:
        time.sleep(0.02)
        state = runtime.state(name)
    return state
