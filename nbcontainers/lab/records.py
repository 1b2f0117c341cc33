"""What ``GET /api/nbcontainers/kernels`` says about one container kernel: a JSON record built
from what the runtime seam reports (state, stats, image) and what this server knows (its own
kernels, their notebooks and settings). Pure functions, so every field is unit-tested."""

from __future__ import annotations

import time
from datetime import datetime
from typing import TypedDict

from ..kernels.limits import size_bytes
from ..kernels.plan import IMAGE_LABEL
from ..kernels.pooled import POOL_ROLE
from ..labels import KERNEL_ID, ROLE
from ..runtimes.base import ContainerState, ContainerStats, EngineFacts

__all__ = [
    "GPUFigures",
    "KernelRecord",
    "ServerKernel",
    "engine_words",
    "host_memory",
    "kernel_record",
    "memory_limit",
    "oom_advice",
    "state_word",
    "uptime",
]

# A container without its own limit reports the host's (or VM's) memory; anything this close
# to all of it is no cap a user could hit before the host runs out.
UNLIMITED_SHARE = 0.98


class GPUFigures(TypedDict):
    """One GPU as NVML sees it from inside the container."""

    index: int
    name: str
    utilization: float | None  # percent
    memory_used: int | None  # bytes
    memory_total: int | None  # bytes


class ServerKernel(TypedDict, total=False):
    """What this server knows of a kernel it runs (or of the local kernel a relay belongs to):
    its Jupyter kernel id, notebook path, and the settings the provisioner had."""

    kernel_id: str
    notebook: str | None
    mem_limit: str  # the setting, "" for none ("2g")
    cpus: float  # 0.0 for none


class KernelRecord(TypedDict):
    """One container kernel in the endpoint's list (sizes in bytes; None: not known)."""

    kernel_id: str
    container_id: str
    name: str
    image: str
    image_ref: str
    digest: str | None
    engine: str
    node: str | None
    state: str  # running, exited, oom-killed, paused, ...
    exit_code: int | None
    oom_killed: bool
    memory_used: int | None
    memory_limit: int | None  # None: no limit (or not known)
    mem_limit_setting: str | None
    cpu_percent: float | None  # of one CPU
    cpu_limit: float | None  # cores
    gpus: list[GPUFigures] | None  # None: not known; []: none
    notebook: str | None
    server_kernel: bool  # a kernel of this Jupyter server (picked kernelspec)
    relayed: bool  # behind `%container use` in a local kernel
    parent_kernel_id: str | None  # that local kernel's id, where this server runs it
    pooled: bool  # an idle warm-pool member, not yet any notebook's
    started_at: str
    uptime_s: float | None
    ended_at: float | None  # when this server saw it die (a kept record of a dead kernel)
    advice: str | None  # for an OOM kill: how to raise the limit, or who sets it


def host_memory() -> int | None:
    """This host's memory in bytes (MemTotal), None where /proc can't tell."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def memory_limit(stats: ContainerStats | None, host: int | None, remote: bool) -> int | None:
    """The container's own memory cap, or None where it has none: engines report the host's
    memory for an unlimited container, which is no cap the kernel will meet."""
    if stats is None or stats.memory_limit is None or stats.memory_limit <= 0:
        return None
    if not remote and host and stats.memory_limit >= host * UNLIMITED_SHARE:
        return None
    return stats.memory_limit


def state_word(state: ContainerState, mem_limit_setting: str) -> str:
    """The engine's status, except that a kernel killed for memory says "oom-killed": the
    engine's OOM flag, or SIGKILL's exit code 137 under a memory limit (engines do not always
    set the flag; kernels/crash.py reads it the same way)."""
    if not state.running and oom_killed(state, mem_limit_setting):
        return "oom-killed"
    return state.status


def oom_killed(state: ContainerState, mem_limit_setting: str) -> bool:
    return state.oom_killed or (state.exit_code == 137 and bool(mem_limit_setting))


def oom_advice(relayed: bool, max_mem_limit: str, policy_file: str) -> str:
    """How to get more memory: the setting to raise, or who to ask where the admin's policy
    caps it (``max_mem_limit``, "" for no cap)."""
    how = (
        "Raise it in the notebook with `%container use IMAGE --memory 4g`"
        if relayed
        else "Raise it with the kernelspec's mem_limit (metadata.kernel_provisioner.config) "
        "or c.ContainerProvisioner.mem_limit = '4g' in jupyter_server_config.py"
    )
    advice = f"{how}, then restart the kernel; or use less memory."
    if max_mem_limit:
        advice += (
            f" Your admin's policy ({policy_file}) allows at most {max_mem_limit} per kernel: "
            "above that, ask your admin (max_mem_limit)."
        )
    return advice


def uptime(started_at: str, now: float | None = None) -> float | None:
    """Seconds since ``started_at`` (RFC 3339, as engines write it), None where unparsable."""
    if not started_at or started_at.startswith("0001-"):
        return None
    text = started_at.replace("Z", "+00:00")
    # Engines give nanoseconds; fromisoformat takes at most microseconds.
    head, dot, rest = text.partition(".")
    if dot:
        digits = "".join(c for c in rest if c.isdigit())
        zone = rest[len(digits) :]
        text = f"{head}.{digits[:6]}{zone}"
    try:
        started = datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None
    return max(0.0, (time.time() if now is None else now) - started)


def engine_words(facts: EngineFacts | None, node: str) -> str:
    """How the status bar names the engine: "Docker", "rootless Podman", "Swarm node n1"."""
    if facts is None:
        return "unknown engine"
    names = {"docker": "Docker", "podman": "Podman", "swarm": "Swarm", "kubernetes": "Kubernetes"}
    word = names.get(facts.name, facts.name)
    if facts.rootless:
        word = f"rootless {word}"
    if node:
        word += f" node {node}"
    return word


def kernel_record(
    state: ContainerState,
    stats: ContainerStats | None,
    *,
    facts: EngineFacts | None,
    digest: str | None,
    gpus: list[GPUFigures] | None,
    known: ServerKernel | None,
    parent: ServerKernel | None,
    host: int | None,
) -> KernelRecord:
    """The record for one container. ``known`` is this server's own kernel running in it;
    ``parent`` the local kernel that relays to it (``%container use``); both None for a
    pool member or a kernel of another server of the same user."""
    setting = (known or {}).get("mem_limit", "")
    cpus = (known or {}).get("cpus", 0.0)
    pooled = known is None and state.labels.get(ROLE) == POOL_ROLE
    running = state.running and stats is not None
    return {
        "kernel_id": (known or {}).get("kernel_id") or state.labels.get(KERNEL_ID, state.id),
        "container_id": state.id,
        "name": state.name,
        "image": state.labels.get(IMAGE_LABEL) or state.image,
        "image_ref": state.image,
        "digest": digest,
        "engine": engine_words(facts, state.node),
        "node": state.node or None,
        "state": state_word(state, setting),
        "exit_code": state.exit_code if not state.running else None,
        "oom_killed": not state.running and oom_killed(state, setting),
        "memory_used": stats.memory_used if running and stats else None,
        # An exited kernel's stats are its last sample while it ran, or none: then the setting.
        "memory_limit": memory_limit(stats, host, bool(facts and facts.remote))
        or (size_bytes(setting) if setting else None),
        "mem_limit_setting": setting or None,
        "cpu_percent": stats.cpu_percent if running and stats else None,
        "cpu_limit": cpus or None,
        "gpus": gpus,
        "notebook": (known or parent or {}).get("notebook"),
        "server_kernel": known is not None,
        "relayed": parent is not None,
        "parent_kernel_id": (parent or {}).get("kernel_id"),
        "pooled": pooled,
        "started_at": state.started_at,
        "uptime_s": uptime(state.started_at) if state.running else None,
        "ended_at": None,
        "advice": None,
    }
