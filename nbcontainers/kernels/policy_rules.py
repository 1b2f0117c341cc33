"""How the admin's policy (:mod:`.policy`) applies to one kernel's settings, before an image
is built or pulled: limits filled and capped (memory, CPUs, processes, /dev/shm and HOME
tmpfs), network and mounts refused unless allowed, GPUs narrowed, the image checked against
the admin's catalog by ref, the warm pool's size and memory capped. Every refusal is a
ConfigError naming the rule and the file."""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import replace
from fnmatch import fnmatch
from typing import Any

from ..catalog.entries import CatalogImage, load_catalog
from ..errors import ConfigError
from ..runtimes.base import GPURequest
from .limits import MIN_MEMORY, canonical_size, checked_size, size_bytes
from .plan import (
    DEFAULT_HOME_SIZE,
    DEFAULT_PIDS_LIMIT,
    DEFAULT_SHM_SIZE,
    LaunchConfig,
    check_config,
    parse_mount,
)
from .policy import DEFAULT_MOUNTS, DEFAULT_NETWORKS, Policy, mount_rule

__all__ = ["apply_policy", "check_image", "pool_limits"]

ENGINE_SHM = 64 << 20  # the /dev/shm an engine gives when asked for no size


def apply_policy(
    policy: Policy,
    config: LaunchConfig,
    image: CatalogImage,
    gpus: GPURequest | None,
    admin: Mapping[str, CatalogImage] | None = None,
) -> tuple[LaunchConfig, GPURequest | None]:
    """``config`` checked (no value the engine reads as "unlimited", with or without a policy)
    with the policy's defaults and caps filled in, and the GPUs narrowed to the allowed ones;
    a rule broken is a ConfigError that names it. ``admin`` is the admin's catalog (default:
    the one shipped with nbcontainers, never a user's file)."""
    config = check_config(config, policy.denied_env)
    if policy.allowed_images:
        check_image(policy, image, admin)
    mem = config.mem_limit or policy.default_mem_limit
    if mem:
        mem = checked_size("mem_limit", mem, MIN_MEMORY, "no memory limit")
    if policy.max_mem_limit and (not mem or size_bytes(mem) > size_bytes(policy.max_mem_limit)):
        # No limit at all is more than any maximum: the maximum becomes the limit then.
        if config.mem_limit:
            raise ConfigError(
                f"mem_limit={config.mem_limit!r} is over the maximum {policy.max_mem_limit!r} "
                f"({policy.rule('max_mem_limit')}). Ask for less."
            )
        mem = canonical_size(size_bytes(policy.max_mem_limit))
    cpus = config.cpus or policy.default_cpus
    if policy.max_cpus and (not cpus or cpus > policy.max_cpus):
        if config.cpus:
            raise ConfigError(
                f"cpus={config.cpus:g} is over the maximum {policy.max_cpus:g} "
                f"({policy.rule('max_cpus')}). Ask for less."
            )
        cpus = policy.max_cpus
    pids = config.pids_limit
    if policy.max_pids_limit and pids > policy.max_pids_limit:
        if pids != DEFAULT_PIDS_LIMIT:
            raise ConfigError(
                f"pids_limit={pids} is over the maximum {policy.max_pids_limit} "
                f"({policy.rule('max_pids_limit')}). Ask for less."
            )
        pids = policy.max_pids_limit
    shm = _tmpfs(policy, "shm_size", config.shm_size, DEFAULT_SHM_SIZE, "max_shm_size", mem)
    home = _tmpfs(policy, "home_size", config.home_size, DEFAULT_HOME_SIZE, "max_tmpfs_size", mem)
    if policy.active:
        _check_network(policy, config.network)
        _check_mounts(policy, config.extra_mounts)
    if gpus is not None and policy.allowed_gpus is not None:
        gpus = _allowed_gpus(policy, gpus)
    checked = replace(
        config, mem_limit=mem, cpus=cpus, pids_limit=pids, shm_size=shm, home_size=home
    )
    return check_config(checked, policy.denied_env), gpus


def _tmpfs(policy: Policy, setting: str, value: str, default: str, rule: str, mem: str) -> str:
    """A tmpfs size (/dev/shm, HOME) under the policy: its pages are memory, so it is capped
    by the tmpfs rule and by max_mem_limit; a default over the cap shrinks to the kernel's."""
    caps = [
        (size_bytes(getattr(policy, r)), r) for r in (rule, "max_mem_limit") if getattr(policy, r)
    ]
    if not caps:
        return value
    cap, which = min(caps)
    if not value:  # the engine's own size, 64 MiB (Docker and Podman alike)
        return value if cap >= ENGINE_SHM else canonical_size(cap)
    if size_bytes(value) <= cap:
        return value
    if value != default:
        raise ConfigError(
            f"{setting}={value!r} is over the maximum {canonical_size(cap)!r} "
            f"({policy.rule(which)}): a tmpfs is memory. Ask for less."
        )
    # The default (or the engine's own, when unset): as big as the kernel may use, no more.
    return canonical_size(min([cap] + ([size_bytes(mem)] if mem else [])))


def _check_network(policy: Policy, network: str) -> None:
    allowed = policy.allowed_networks if policy.allowed_networks is not None else DEFAULT_NETWORKS
    if network not in allowed:
        where = policy.rule("allowed_networks")
        if policy.allowed_networks is None:
            where = f"allowed_networks is not set in {policy.source}: the default"
        raise ConfigError(
            f"network={network!r} is not allowed on this host ({where}); allowed: "
            f"{', '.join(allowed) or 'none'}. Remove the 'network' setting, or ask your admin."
        )


def _own_private(folder: str) -> bool:
    """A folder of the user's own that nobody else can open (the transfer folder of
    ``%container``): it gives the kernel, which runs as the user, nothing new."""
    try:
        info = os.lstat(folder)
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o077


def _check_mounts(policy: Policy, items: tuple[Any, ...]) -> None:
    entries = policy.allowed_mounts if policy.allowed_mounts is not None else DEFAULT_MOUNTS
    rules = [mount_rule(e, policy.source) for e in entries]
    where = policy.rule("allowed_mounts")
    if policy.allowed_mounts is None:
        where = f"allowed_mounts is not set in {policy.source}: the default, your home"
    for item in items:
        mount = parse_mount(item)
        source = os.path.realpath(mount.source)  # a link can't lead out of an allowed folder
        if _own_private(source):
            continue
        inside = [rw for folder, rw in rules if (source + "/").startswith(folder.rstrip("/") + "/")]
        if not inside:
            raise ConfigError(
                f"extra_mounts: {source} is not in a folder kernels may mount ({where}); "
                f"allowed: {', '.join(entries) or 'none'}. Remove it, or ask your admin."
            )
        if not mount.read_only and not any(inside):
            raise ConfigError(
                f"extra_mounts: {source} may be mounted read-only only ({where}; read-write "
                f"needs ':rw' in allowed_mounts). Mount it with ':ro'."
            )


def check_image(
    policy: Policy, image: CatalogImage, admin: Mapping[str, CatalogImage] | None = None
) -> None:
    """Refuse ``image`` unless its ref is one the admin allowed: a name pattern of
    ``allowed_images`` resolved in the admin's catalog (``admin``, default: the catalog
    shipped with nbcontainers, no user file, no environment override), or a ref listed
    there as such. A user's own image of an allowed ref passes (same image); one they would
    build from their own folder does not."""
    if not policy.allowed_images:
        return
    admin = admin if admin is not None else load_catalog(include_user=False, shipped=True)
    refs = {p for p in policy.allowed_images if any(c in p for c in "/:@")}
    names = [p for p in policy.allowed_images if p not in refs]
    refs |= {i.ref for n, i in admin.items() if any(fnmatch(n, p) for p in names)}
    rule = policy.rule("allowed_images")
    if image.ref not in refs:
        raise ConfigError(
            f"Image {image.name!r} ({image.ref}) is not allowed on this host ({rule}); "
            f"allowed: {', '.join(policy.allowed_images)}, as the admin's catalog names them."
        )
    if image.user_defined and image.source is not None:
        raise ConfigError(
            f"Image {image.name!r} is built from your own folder {image.source}; only the "
            f"admin's images may run here ({rule}). Use the catalog's own name for {image.ref}."
        )


def pool_limits(policy: Policy, size: int, max_memory: str) -> tuple[int, int]:
    """The warm pool's size and memory cap in bytes (0: none) under the policy; a pool memory
    cap of "0" is no cap and is refused, with or without a policy."""
    if policy.max_pool_size is not None and size > policy.max_pool_size:
        raise ConfigError(
            f"pool_size={size} is over the maximum {policy.max_pool_size} "
            f"({policy.rule('max_pool_size')}). Ask for less."
        )
    cap = size_bytes(checked_size("pool_max_memory", max_memory, 1, "no cap")) if max_memory else 0
    if policy.max_pool_memory:
        most = size_bytes(policy.max_pool_memory)
        if max_memory and cap > most:
            raise ConfigError(
                f"pool_max_memory={max_memory!r} is over the maximum {policy.max_pool_memory!r} "
                f"({policy.rule('max_pool_memory')}). Ask for less."
            )
        cap = min(cap, most) if cap else most
    return size, cap


def _allowed_gpus(policy: Policy, gpus: GPURequest) -> GPURequest:
    allowed = policy.allowed_gpus or ()
    rule = policy.rule("allowed_gpus")
    if not allowed:
        raise ConfigError(f"No GPUs may be used by kernels on this host ({rule}).")
    if gpus.device_ids:
        extra = sorted(set(gpus.device_ids) - set(allowed))
        if extra:
            raise ConfigError(
                f"GPU {', '.join(extra)} is not yours to use here ({rule}); allowed: "
                f"{', '.join(allowed)}. Ask for those by id (gpus='{','.join(allowed)}')."
            )
        return gpus
    if gpus.count in (None, -1):  # "all" means all of the GPUs you may use
        return GPURequest(device_ids=allowed)
    if gpus.count > len(allowed):
        raise ConfigError(f"gpus={gpus.count} is more than the {len(allowed)} allowed ({rule}).")
    return GPURequest(device_ids=allowed[: gpus.count])
