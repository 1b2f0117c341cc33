"""The admin's policy for container kernels on a shared host: one root-owned file,
``/etc/nbcontainers/policy.json``, that for its keys wins over user and kernelspec config.

```json
{"allowed_images": ["python", "pytorch-*"], "default_mem_limit": "8g", "max_mem_limit": "32g",
 "default_cpus": 2, "max_cpus": 8, "max_kernels_per_user": 4, "allowed_gpus": ["0", "1"],
 "user_mem_limit": "64g", "user_cpus": 16, "user_tasks": 4096}
```

The ``user_*`` rules are per-user totals that nbcontainers never checks itself: ``nbcontainers
hub setup`` writes them into each user's systemd slice, where the OS enforces them.

Defaults fill a setting nobody gave; maxima refuse a kernel that asks for more, naming the
rule and the file. Where it holds: everything started through nbcontainers. A user with a
shell can still run their own rootless ``podman``, so hard limits belong to the OS (systemd
slices for memory/CPU/tasks, device permissions for GPUs); the README says which is which.
The file is ignored nowhere: a policy that is unreadable, malformed or writable by anyone but
root stops kernel starts (fail closed) with the command that fixes it.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import stat
import time
from dataclasses import dataclass, fields, replace
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from ..errors import ConfigError, did_you_mean
from ..rundir import user_runtime_dir
from ..runtimes.base import GPURequest
from .launch import LaunchConfig

__all__ = [
    "POLICY_FILE",
    "KernelCountLock",
    "Policy",
    "apply_policy",
    "check_kernel_count",
    "load_policy",
    "size_bytes",
]

POLICY_FILE = Path("/etc/nbcontainers/policy.json")


@dataclass(frozen=True)
class Policy:
    """The rules; empty or zero means "no rule". ``allowed_gpus`` None: any GPU."""

    source: str = ""
    allowed_images: tuple[str, ...] = ()
    default_mem_limit: str = ""
    max_mem_limit: str = ""
    default_cpus: float = 0.0
    max_cpus: float = 0.0
    max_kernels_per_user: int = 0
    allowed_gpus: tuple[str, ...] | None = None
    user_mem_limit: str = ""
    user_cpus: float = 0.0
    user_tasks: int = 0

    def rule(self, key: str) -> str:
        return f"{key} in {self.source}, set by your admin"


def size_bytes(size: str) -> int:
    """Docker-style sizes: "512m", "2g", "1024"."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([bkmgt]?)b?", size.strip().lower())
    if not match:
        raise ConfigError(f"Invalid size {size!r}: use a number with k, m, g or t, e.g. '16g'.")
    scale = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    return int(float(match.group(1)) * scale[match.group(2)])


def load_policy(path: Path | None = None) -> Policy:
    """The policy at ``path`` (default :data:`POLICY_FILE`); no file, no rules."""
    path = path or POLICY_FILE
    try:
        info = path.stat()
    except FileNotFoundError:
        return Policy()
    except OSError as exc:
        raise ConfigError(
            f"The kernel policy {path} can't be read ({exc}); ask your admin."
        ) from None
    # Only root may decide the rules: a file others can write is no policy at all.
    if info.st_uid != 0 or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ConfigError(
            f"The kernel policy {path} must belong to root and be writable by root alone; "
            f"ask your admin to run `sudo chown root:root {path} && sudo chmod 644 {path}`."
        )
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"The kernel policy {path} is not valid JSON ({exc}); ask your admin."
        ) from None
    if not isinstance(raw, dict):
        raise ConfigError(f"The kernel policy {path} must be a JSON object of rules.")
    known = [f.name for f in fields(Policy) if f.name != "source"]
    values: dict[str, Any] = {"source": str(path)}
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(
                f"Unknown rule {key!r} in {path}.{did_you_mean(key, known)} "
                f"Rules: {', '.join(known)}."
            )
        values[key] = _typed(path, key, value)
    policy = Policy(**values)
    for key in ("default_mem_limit", "max_mem_limit", "user_mem_limit"):
        if getattr(policy, key):
            size_bytes(getattr(policy, key))  # a bad size fails here, not at every start
    return policy


def _typed(path: Path, key: str, value: Any) -> Any:
    def bad(expected: str) -> ConfigError:
        return ConfigError(f"Rule {key!r} in {path} must be {expected}, not {value!r}.")

    if key in ("allowed_images", "allowed_gpus"):
        if not isinstance(value, list) or not all(isinstance(v, str | int) for v in value):
            raise bad("a list of names")
        return tuple(str(v) for v in value)
    if key in ("default_mem_limit", "max_mem_limit", "user_mem_limit"):
        if not isinstance(value, str):
            raise bad("a size such as '16g'")
        return value
    if key in ("max_kernels_per_user", "user_tasks"):
        if not isinstance(value, int) or value < 0:
            raise bad("a whole number")
        return value
    if not isinstance(value, int | float) or value < 0:
        raise bad("a number")
    return float(value)


def apply_policy(
    policy: Policy, config: LaunchConfig, image: str, gpus: GPURequest | None
) -> tuple[LaunchConfig, GPURequest | None]:
    """``config`` with the policy's defaults and caps filled in, and the GPUs narrowed to the
    allowed ones; a rule broken is a ConfigError that names it."""
    if policy.allowed_images and not any(fnmatch(image, p) for p in policy.allowed_images):
        raise ConfigError(
            f"Image {image!r} is not allowed on this host ({policy.rule('allowed_images')}); "
            f"allowed: {', '.join(policy.allowed_images)}."
        )
    mem = config.mem_limit or policy.default_mem_limit
    if policy.max_mem_limit and (not mem or size_bytes(mem) > size_bytes(policy.max_mem_limit)):
        # No limit at all is more than any maximum: the maximum becomes the limit then.
        if config.mem_limit:
            raise ConfigError(
                f"mem_limit={config.mem_limit!r} is over the maximum {policy.max_mem_limit!r} "
                f"({policy.rule('max_mem_limit')}). Ask for less."
            )
        mem = policy.max_mem_limit
    cpus = config.cpus or policy.default_cpus
    if policy.max_cpus and (not cpus or cpus > policy.max_cpus):
        if config.cpus:
            raise ConfigError(
                f"cpus={config.cpus:g} is over the maximum {policy.max_cpus:g} "
                f"({policy.rule('max_cpus')}). Ask for less."
            )
        cpus = policy.max_cpus
    if gpus is not None and policy.allowed_gpus is not None:
        gpus = _allowed_gpus(policy, gpus)
    return replace(config, mem_limit=mem, cpus=cpus), gpus


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


def check_kernel_count(policy: Policy, owner: str, running: int) -> None:
    """Refuse one more kernel when ``owner`` already runs the most the policy allows."""
    if policy.max_kernels_per_user and running >= policy.max_kernels_per_user:
        raise ConfigError(
            f"{owner} already runs {running} container kernels, the most allowed "
            f"({policy.rule('max_kernels_per_user')}). Shut one down first "
            "(`%container list`, or the running-kernels panel in JupyterLab)."
        )


class KernelCountLock:
    """One user's kernel starts, one at a time, from counting the running kernels until the new
    one runs: without it two starts at the same moment both see room for one more. An
    ``flock`` on a file in the user's runtime folder, so it holds across threads and across
    processes (two Jupyter servers of one user); the OS drops it if the process dies."""

    NAME = "nbcontainers-kernel-start.lock"

    def __init__(self, folder: Path | None = None, timeout: float = 300.0) -> None:
        self.folder = folder
        self.timeout = timeout
        self._fd: int | None = None

    @staticmethod
    def user_folder() -> Path:
        """The user's private runtime folder (``nbcontainers.rundir``): a folder another user
        could have planted is refused, never used."""
        return user_runtime_dir()

    def acquire(self) -> None:
        """Wait for the lock (polling, so a stuck holder ends in a clear error, not a hang)."""
        path = (self.folder or self.user_folder()) / self.NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._fd = fd
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise ConfigError(
                        f"Another kernel start of yours has held {path} for {self.timeout:.0f} s; "
                        "try again once it is done (or end the process that holds it)."
                    ) from None
                time.sleep(0.05)

    def release(self) -> None:
        """Let the next start count; a no-op when not held."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
