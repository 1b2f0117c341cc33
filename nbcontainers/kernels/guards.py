"""What no kernel gets, with or without an admin's policy: a limit its engine would read as
"none", an environment variable that steers the container runtime, a bind mount of a socket,
a device or /proc, /sys, /dev. :func:`check_config` refuses them on a kernel's settings (a
ConfigError naming the setting); :func:`parse_mount` reads one ``extra_mounts`` entry."""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import replace
from fnmatch import fnmatch
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..runtimes.base import Mount
from .limits import MIN_MEMORY, MIN_TMPFS, checked_cpus, checked_pids, checked_size

if TYPE_CHECKING:
    from .plan import LaunchConfig

__all__ = [
    "NO_GPUS",
    "RUNTIME_ENV",
    "check_config",
    "matches",
    "parse_mount",
    "refuse_env",
]

# Read by container runtimes and their hooks on the host (the NVIDIA, AMD and Habana
# toolkits hand out devices by them), not only by the kernel: set by the engine from the
# ``gpus`` setting, never by a user, or they walk past ``allowed_gpus``. (LD_PRELOAD and the
# like act inside the container only, on the user's own processes: no boundary there.)
RUNTIME_ENV = ("NVIDIA_*", "AMD_VISIBLE_DEVICES", "HABANA_VISIBLE_DEVICES")
# What a kernel without GPUs tells the NVIDIA runtime: no devices, as if it were plain runc.
# Images built on nvidia/cuda set NVIDIA_VISIBLE_DEVICES=all, which that runtime obeys.
NO_GPUS = {"NVIDIA_VISIBLE_DEVICES": "void"}
# Host paths whose files are the kernel's interface to the host, never a bind mount's source
# (/dev/shm is a plain tmpfs: %container's transfer folders live there).
_NEVER_MOUNTED = ("/proc", "/sys", "/dev")
_MOUNTABLE_DEV = ("/dev/shm",)


def check_config(config: LaunchConfig, refused_env: Sequence[str] = ()) -> LaunchConfig:
    """``config`` with its limits in the form every engine reads alike; refuse (ConfigError,
    naming the setting) any value an engine would read as "no limit" (a memory limit of 0 or
    below the engine's minimum, CPUs that round to none, pids_limit 0 or -1, a tmpfs of size
    0), a variable of the ``env`` setting that steers the container runtime (RUNTIME_ENV,
    ``refused_env``), and a mount of a socket, a device or /proc, /sys, /dev. With or
    without an admin's policy: these are never what a user means."""
    mem = config.mem_limit
    if mem:
        mem = checked_size("mem_limit", mem, MIN_MEMORY, "no memory limit")
    checked_cpus(config.cpus)
    shm = config.shm_size
    if shm:
        shm = checked_size("shm_size", shm, MIN_TMPFS, "its own default size")
    home = checked_size("home_size", config.home_size, MIN_TMPFS, "an unlimited tmpfs")
    refuse_env(config.env, (*RUNTIME_ENV, *refused_env), "the 'env' setting")
    for item in config.extra_mounts:
        _refuse_unsafe_source(parse_mount(item).source)
    return replace(
        config,
        mem_limit=mem,
        pids_limit=checked_pids(config.pids_limit),
        shm_size=shm,
        home_size=home,
    )


def matches(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch(name, p) for p in patterns)


def refuse_env(env: Mapping[str, Any], patterns: Sequence[str], where: str) -> None:
    bad = sorted(str(k) for k in env if matches(str(k), patterns))
    if bad:
        raise ConfigError(
            f"{', '.join(bad)} in {where} steers the container runtime (which devices the "
            "container gets), so only nbcontainers sets it. Remove it, and ask for GPUs with "
            "the 'gpus' setting (gpus='all', a count or ids) instead."
        )


def _refuse_unsafe_source(source: str) -> None:
    """A bind mount's host side may not be the engine's socket (root on the host), any
    other socket or device node, or a path under /proc, /sys or /dev."""
    real = os.path.realpath(source)
    under = [p for p in _NEVER_MOUNTED if (real + "/").startswith(p + "/")]
    if under and not any((real + "/").startswith(p + "/") for p in _MOUNTABLE_DEV):
        raise ConfigError(
            f"extra_mounts: {source} is under {under[0]}, never mounted into a kernel."
        )
    try:
        mode = os.stat(real).st_mode
    except OSError:
        return  # not on this host (a cluster node's folder): the engine checks it there
    if stat.S_ISSOCK(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        what = "a socket" if stat.S_ISSOCK(mode) else "a device"
        raise ConfigError(
            f"extra_mounts: {source} is {what}; kernels never get the host's sockets (an "
            "engine's socket is root on the host) or devices. GPUs come with the 'gpus' setting."
        )


def parse_mount(item: Any) -> Mount:
    """One ``extra_mounts`` entry: 'host:container[:ro|rw]' (read-only unless ``rw``) or
    ``{'source': ..., 'target': ..., 'read_only': ...}``."""
    if isinstance(item, dict):
        unknown = set(item) - {"source", "target", "read_only"}
        if unknown or "source" not in item:
            raise ConfigError(
                f"Bad extra_mounts entry {item!r}: use 'host:container[:ro|rw]' or "
                "{'source': ..., 'target': ..., 'read_only': true}."
            )
        return Mount(
            os.path.expanduser(str(item["source"])),
            str(item.get("target") or item["source"]),
            bool(item.get("read_only", True)),
        )
    parts = str(item).split(":")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
        raise ConfigError(
            f"Bad extra_mounts entry {item!r}: use 'host:container[:ro|rw]', "
            "e.g. '~/data:/data:ro'."
        )
    source = os.path.abspath(os.path.expanduser(parts[0]))
    if not os.path.exists(source):
        raise ConfigError(f"extra_mounts: {source} does not exist on this host.")
    return Mount(source, parts[1], read_only=len(parts) == 2 or parts[2] == "ro")
