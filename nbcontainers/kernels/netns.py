"""Shared network namespaces: one small holder container per owner that kernel containers join.

Creating a network namespace with its veth pair is about half of a container's start time
on Docker's bridge network. Joining a holder's namespace (`network_mode=container:<id>`)
skips that, while kernels keep outbound network and stay off the host's loopback. Kernels
of one owner share the namespace, as local kernels share the host's.
"""

from __future__ import annotations

import re
import socket

from ..errors import RuntimeFailure
from ..labels import OWNER, ROLE, SERVER_HOST
from ..runtimes.base import ContainerRuntime, ContainerSpec

__all__ = ["HOLDER_ROLE", "holder_name", "shared_netns"]

HOLDER_ROLE = "netns"


def holder_name(owner: str) -> str:
    return "nbc-netns-" + (re.sub(r"[^a-zA-Z0-9_.-]", "-", owner) or "user")


def shared_netns(runtime: ContainerRuntime, owner: str, image_ref: str, user: str) -> str:
    """Return ``container:<id>`` of the owner's running holder, starting one if needed."""
    name = holder_name(owner)
    state = runtime.state(name)
    if state is not None and state.status == "running":
        return f"container:{state.id}"
    if state is not None:
        runtime.remove(state.id)
    spec = ContainerSpec(
        image=image_ref,
        command=("sleep", "infinity"),
        name=name,
        labels={ROLE: HOLDER_ROLE, OWNER: owner, SERVER_HOST: socket.gethostname()},
        user=user,
        network_mode="bridge",
        mem_limit="16m",
        pids_limit=4,
    )
    try:
        return f"container:{runtime.run(spec)}"
    except RuntimeFailure as exc:
        if "Conflict" not in str(exc) and "already in use" not in str(exc):
            raise
        # Another kernel start created it a moment ago: join that one.
        state = runtime.state(name)
        if state is None or state.status != "running":
            raise
        return f"container:{state.id}"
