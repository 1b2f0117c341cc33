"""Each user's runtime folder (engine socket, kernel-start lock): only where nobody but that
user, or root, can have made it.

A predictable path in a shared temp folder can be created by anyone first; the old
``/tmp/nbc-podman-UID`` let one hub user deny another every kernel that way. So the folder is,
in order: ``$XDG_RUNTIME_DIR`` (logind's, or what the user set), ``/run/user/UID`` (logind's),
``/run/nbcontainers/UID`` (made as root by ``nbcontainers hub setup``, under a root-owned
parent), else one under the user's own home. Whichever is found must be a real folder (not a
link), owned by the user and closed to everyone else (no group or other bits); anything else
is refused with the command that fixes it, never used.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import ConfigError

__all__ = ["HUB_RUN_ROOT", "check_private", "hub_user_dir", "user_runtime_dir"]

HUB_RUN_ROOT = Path("/run/nbcontainers")
# Under the home: short enough that a socket path inside stays below the 108-byte limit.
HOME_FALLBACK = (".cache", "nbcontainers", "run")


def hub_user_dir(uid: int) -> Path:
    """The folder ``hub setup`` makes for one user (as root: the user's, mode 0700)."""
    return HUB_RUN_ROOT / str(uid)


def check_private(folder: Path, uid: int, how: str) -> Path:
    """``folder`` if it is a real directory owned by ``uid`` with no group/other access, else
    a ConfigError naming what is wrong and ``how`` to fix it."""
    # lstat, not stat: a link to a private folder is still a path someone else chose, and the
    # link can be swapped between this check and the engine's use of the socket inside.
    try:
        info = folder.lstat()
    except OSError as exc:
        raise ConfigError(f"{folder} cannot be used ({exc.strerror}). {how}") from None
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"{folder} is not a folder (a link or a file is never used). {how}")
    if info.st_uid != uid:
        raise ConfigError(f"{folder} belongs to uid {info.st_uid}, not to you ({uid}). {how}")
    # Any group or other bit refuses: a socket in a folder others can traverse is reachable
    # by them if its own mode is ever loose, and the kernel-start lock could be held by them.
    if info.st_mode & 0o077:
        raise ConfigError(
            f"{folder} is open to other users (mode {stat.S_IMODE(info.st_mode):o}); "
            f"run `chmod 700 {folder}`. {how}"
        )
    return folder


def _root_owned_parent(folder: Path) -> bool:
    """Whether the folder's parent is root's and writable by nobody else."""
    info = folder.parent.lstat()
    return (
        stat.S_ISDIR(info.st_mode)
        and info.st_uid == 0
        and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    )


def user_runtime_dir() -> Path:
    """This user's runtime folder (see the module docstring); made under the home when no
    other exists. Raises ConfigError for one that exists but is not private to the user."""
    uid = os.getuid()
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    # A set XDG_RUNTIME_DIR is checked, never skipped: falling through to the next candidate
    # would put the engine's socket where the user did not say, and hide a broken login.
    if xdg:
        return check_private(
            Path(xdg), uid, "XDG_RUNTIME_DIR must name your own private folder; unset it or fix it."
        )
    login = Path(f"/run/user/{uid}")
    if login.exists():
        return check_private(login, uid, "It is made by logind at login; ask your admin.")
    hub = hub_user_dir(uid)
    if hub.exists():
        # Owned by the user is not enough here: if /run/nbcontainers itself is writable by
        # someone else, they could have renamed the user's folder away and made their own.
        if not _root_owned_parent(hub):
            raise ConfigError(
                f"{hub.parent} is not root's alone; ask your admin to run "
                "`sudo nbcontainers hub setup`, which makes it again."
            )
        return check_private(hub, uid, "Ask your admin to run `sudo nbcontainers hub setup`.")
    home = Path.home()
    fallback = home.joinpath(*HOME_FALLBACK)
    try:
        fallback.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"No runtime folder for uid {uid}: XDG_RUNTIME_DIR is unset, {login} and {hub} do "
            f"not exist and {fallback} cannot be made ({exc.strerror}). Set XDG_RUNTIME_DIR, "
            "or ask your admin to run `sudo nbcontainers hub setup`."
        ) from None
    return check_private(fallback, uid, f"Remove it (`rm -rf {fallback}`) and try again.")
