"""The admin's policy for container kernels on a shared host: one root-owned file,
``/etc/nbcontainers/policy.json``, that for its keys wins over user and kernelspec config.

```json
{"allowed_images": ["python", "pytorch-*"], "default_mem_limit": "8g", "max_mem_limit": "32g",
 "default_cpus": 2, "max_cpus": 8, "max_pids_limit": 4096, "max_shm_size": "4g",
 "max_tmpfs_size": "4g", "allowed_networks": ["shared", "bridge", "none"],
 "allowed_mounts": ["~:rw", "/data"], "denied_env": ["MY_RUNTIME_*"],
 "max_kernels_per_user": 4, "max_pool_size": 2, "max_pool_memory": "2g",
 "allowed_gpus": ["0", "1"], "user_mem_limit": "64g", "user_cpus": 16, "user_tasks": 4096}
```

The ``user_*`` rules are per-user totals that nbcontainers never checks itself: ``nbcontainers
hub setup`` writes them into each user's systemd slice, where the OS enforces them.

Defaults fill a setting nobody gave; maxima refuse a kernel that asks for more, naming the
rule and the file; a default above a maximum is lowered to it. Everything is checked on the
resolved settings before an image is built or pulled (:mod:`.policy_rules`), and again on
the plan the engine receives. Allowed images are the admin's catalog entries resolved to
their refs (a user's catalog file can't rename its way in). Kernel counts come from the
engine's labels for the owner, pool members and handed-out kernels alike, under one per-user
lock (:class:`KernelCountLock`). Where it holds: everything started through nbcontainers. A
user with a shell can still run their own rootless ``podman``, so hard limits belong to the
OS (systemd slices for memory/CPU/tasks, device permissions for GPUs); the README says which
is which. The file is ignored nowhere: a policy that is unreadable, malformed or writable by
anyone but root stops kernel starts (fail closed) with the command that fixes it.
"""

from __future__ import annotations

import fcntl
import json
import os
import pwd
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..errors import ConfigError, did_you_mean
from ..labels import KERNEL_ID, OWNER
from ..rundir import user_runtime_dir
from ..runtimes.base import ContainerRuntime
from .limits import MIN_MEMORY, MIN_NANO_CPUS, MIN_TMPFS, checked_size, size_bytes
from .plan import SHARED

__all__ = [
    "DEFAULT_MOUNTS",
    "DEFAULT_NETWORKS",
    "POLICY_FILE",
    "KernelCountLock",
    "Policy",
    "check_kernel_count",
    "count_kernels",
    "load_policy",
    "mount_rule",
    "owner_name",
    "pool_admission",
    "size_bytes",
]

POLICY_FILE = Path("/etc/nbcontainers/policy.json")
# Under a policy that names no networks: never the host's, another container's or a named one.
DEFAULT_NETWORKS = (SHARED, "bridge", "none")
# Under a policy that names no mounts: the user's own home (from the passwd file, not $HOME).
DEFAULT_MOUNTS = ("~:rw",)
_SIZES = {
    "default_mem_limit": MIN_MEMORY,
    "max_mem_limit": MIN_MEMORY,
    "user_mem_limit": MIN_MEMORY,
    "max_shm_size": MIN_TMPFS,
    "max_tmpfs_size": MIN_TMPFS,
    "max_pool_memory": 1,
}
_LISTS = ("allowed_images", "allowed_gpus", "allowed_networks", "allowed_mounts", "denied_env")
_COUNTS = ("max_kernels_per_user", "user_tasks", "max_pids_limit", "max_pool_size")


@dataclass(frozen=True)
class Policy:
    """The rules; empty or zero means "no rule". ``allowed_gpus`` None: any GPU;
    ``allowed_networks``/``allowed_mounts`` None: the defaults above; ``max_pool_size``
    None: no rule (0 turns pools off)."""

    source: str = ""
    allowed_images: tuple[str, ...] = ()
    default_mem_limit: str = ""
    max_mem_limit: str = ""
    default_cpus: float = 0.0
    max_cpus: float = 0.0
    max_pids_limit: int = 0
    max_shm_size: str = ""
    max_tmpfs_size: str = ""
    allowed_networks: tuple[str, ...] | None = None
    allowed_mounts: tuple[str, ...] | None = None
    denied_env: tuple[str, ...] = ()
    max_kernels_per_user: int = 0
    max_pool_size: int | None = None
    max_pool_memory: str = ""
    allowed_gpus: tuple[str, ...] | None = None
    user_mem_limit: str = ""
    user_cpus: float = 0.0
    user_tasks: int = 0

    @property
    def active(self) -> bool:
        """Is there a policy file at all (its defaults for networks and mounts apply)?"""
        return bool(self.source)

    def rule(self, key: str) -> str:
        return f"{key} in {self.source}, set by your admin"


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
    return Policy(**values)


def _typed(path: Path, key: str, value: Any) -> Any:
    def bad(expected: str) -> ConfigError:
        return ConfigError(f"Rule {key!r} in {path} must be {expected}, not {value!r}.")

    if key in _LISTS:
        if not isinstance(value, list) or not all(isinstance(v, str | int) for v in value):
            raise bad("a list of names")
        items = tuple(str(v) for v in value)
        if key == "allowed_mounts":
            for item in items:
                mount_rule(item, path)
        return items
    if key in _SIZES:
        if not isinstance(value, str):
            raise bad("a size such as '16g'")
        # A bad size, or one the engine reads as none, fails here, not at every start.
        checked_size(f"Rule {key} in {path}", value, _SIZES[key], "no limit")
        return value
    if key in _COUNTS:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise bad("a whole number")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise bad("a number")
    if 0 < value < MIN_NANO_CPUS / 1e9:  # a CPU rule below the engine's smallest limit
        raise bad(f"0 (no rule) or at least {MIN_NANO_CPUS / 1e9:g} CPUs")
    return float(value)


def owner_name() -> str:
    """Who starts kernels, as the passwd file says: kernels are labelled and counted by this
    name, which no environment variable ($USER, $LOGNAME) can change."""
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:  # a uid without a passwd entry (some containers)
        return str(os.getuid())


def mount_rule(item: str, path: Path | str) -> tuple[str, bool]:
    """An ``allowed_mounts`` entry: a folder (absolute, or ``~`` for the user's home)
    with ``:rw`` where kernels may write to it, and its folder as a real path."""
    folder, _, mode = item.partition(":")
    if mode not in ("", "ro", "rw") or not (folder.startswith("/") or folder.startswith("~")):
        raise ConfigError(
            f"Rule 'allowed_mounts' in {path}: {item!r} must be an absolute folder or ~ "
            "(the user's home), with ':rw' where kernels may write, e.g. '/data' or '~:rw'."
        )
    if folder.startswith("~"):
        home = pwd.getpwuid(os.getuid()).pw_dir if _has_passwd() else "/nonexistent"
        folder = home + folder[1:]
    return os.path.realpath(folder), mode == "rw"


def _has_passwd() -> bool:
    try:
        pwd.getpwuid(os.getuid())
    except KeyError:
        return False
    return True


# -- counting kernels -----------------------------------------------------------------------


def count_kernels(runtime: ContainerRuntime, owner: str, exclude: str | None = None) -> int:
    """``owner``'s kernel containers that hold resources, as the engine's labels say: started
    kernels, idle pool members and handed-out ones alike (nothing the user can write in a
    socket folder changes this)."""
    states = runtime.list({OWNER: owner, KERNEL_ID: None})
    return sum(1 for s in states if s.running and s.id != exclude)


def check_kernel_count(policy: Policy, owner: str, running: int) -> None:
    """Refuse one more kernel when ``owner`` already runs the most the policy allows."""
    if policy.max_kernels_per_user and running >= policy.max_kernels_per_user:
        raise ConfigError(
            f"{owner} already runs {running} container kernels, the most allowed "
            f"({policy.rule('max_kernels_per_user')}; idle warm-pool kernels count too). "
            "Shut one down first (`%container list`, or the running-kernels panel in "
            "JupyterLab)."
        )


@contextmanager
def pool_admission(policy: Policy, runtime: ContainerRuntime, owner: str) -> Iterator[None]:
    """Around the start of one pool member: under the user's lock, refuse it (ConfigError)
    when ``owner`` already runs the most kernels allowed, so a pool never fills past it."""
    if not policy.max_kernels_per_user:
        yield
        return
    lock = KernelCountLock()
    lock.acquire()
    try:
        check_kernel_count(policy, owner, count_kernels(runtime, owner))
        yield
    finally:
        lock.release()


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
