"""The per-user runtime folders ``hub setup`` makes as root: ``/run/nbcontainers`` (root's,
0755) and in it one folder per user (the user's, 0700), where a hub user's engine socket and
kernel-start lock live when logind made no ``/run/user/UID`` (see ``nbcontainers.rundir``).

Only root can create entries under a root-owned 0755 folder, so no user can plant another's.
What is found there already is checked from the parent's descriptor, never through a link: a
folder of the user's that is too open is closed (0700); anything else (another user's folder,
a link, a file) is removed and made again, and the report says so. ``/run`` is emptied at
boot, so a ``tmpfiles.d`` entry makes the same folders again where systemd runs.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..rundir import HUB_RUN_ROOT

__all__ = ["RunDirs", "ensure_run_dirs", "tmpfiles_text"]

TMPFILES = Path("etc/tmpfiles.d/nbcontainers.conf")  # under the system root
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass
class RunDirs:
    """What was done: ``changes`` (each a line for the report) and ``problems`` (with fixes)."""

    changes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _parent(root: Path, found: RunDirs) -> int | None:
    """A descriptor of ``root`` as root's 0755 folder (made or repaired), or None."""
    up = os.open(root.parent, _DIR)
    try:
        try:
            os.mkdir(root.name, 0o755, dir_fd=up)
            found.changes.append(f"made {root} (root's, 0755)")
        except FileExistsError:
            pass
        try:
            fd = os.open(root.name, _DIR, dir_fd=up)
        except OSError:
            found.problems.append(
                f"{root} is not a folder (a link or a file); remove it (sudo rm {root}) and rerun"
            )
            return None
    finally:
        os.close(up)
    info = os.fstat(fd)
    if (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) != (0, 0, 0o755):
        os.fchown(fd, 0, 0)
        os.fchmod(fd, 0o755)
        found.changes.append(
            f"{root} was uid {info.st_uid} mode {stat.S_IMODE(info.st_mode):04o}: now root's, 0755"
        )
    return fd


def _user_folder(parent: int, root: Path, user: pwd.struct_passwd, found: RunDirs) -> None:
    name, path = str(user.pw_uid), root / str(user.pw_uid)
    try:
        info = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        info = None
    if info is not None and not (stat.S_ISDIR(info.st_mode) and info.st_uid == user.pw_uid):
        # Not the user's own folder: someone else planted it while the parent was open.
        if stat.S_ISDIR(info.st_mode):
            shutil.rmtree(name, dir_fd=parent)  # fd-based: follows no link inside
        else:
            os.unlink(name, dir_fd=parent)
        found.changes.append(
            f"removed {path} (uid {info.st_uid}, {stat.filemode(info.st_mode)}: not "
            f"{user.pw_name}'s own folder)"
        )
        info = None
    if info is None:
        os.mkdir(name, 0o700, dir_fd=parent)
        fd = os.open(name, _DIR, dir_fd=parent)
        try:
            os.fchown(fd, user.pw_uid, user.pw_gid)
            os.fchmod(fd, 0o700)
        finally:
            os.close(fd)
        found.changes.append(f"made {path} ({user.pw_name}'s, 0700)")
    elif stat.S_IMODE(info.st_mode) != 0o700:
        fd = os.open(name, _DIR, dir_fd=parent)
        try:
            os.fchmod(fd, 0o700)
        finally:
            os.close(fd)
        found.changes.append(
            f"{path} was mode {stat.S_IMODE(info.st_mode):04o}: now 0700 ({user.pw_name}'s own)"
        )


def tmpfiles_text(
    users: Sequence[pwd.struct_passwd], old: str = "", root: Path = HUB_RUN_ROOT
) -> str:
    """``tmpfiles.d`` lines for ``root`` and each user's folder; lines for other users that
    ``old`` has are kept (setup may be run for some users only)."""
    mark = "# Written by nbcontainers hub setup: runtime folders (see nbcontainers/rundir.py)"
    lines = {f"d {root} 0755 root root -": None}
    mine = {str(root / str(u.pw_uid)) for u in users}
    for line in old.splitlines():
        parts = line.split()
        ours = len(parts) >= 2 and parts[0] == "d" and parts[1].startswith(f"{root}/")
        if ours and parts[1] not in mine:
            lines[line] = None
    for user in sorted(users, key=lambda u: u.pw_uid):
        lines[f"d {root / str(user.pw_uid)} 0700 {user.pw_uid} {user.pw_gid} -"] = None
    return "\n".join([mark, *lines]) + "\n"


def ensure_run_dirs(
    users: Sequence[pwd.struct_passwd], system_root: Path = Path("/"), root: Path = HUB_RUN_ROOT
) -> RunDirs:
    """Make or repair ``root`` and each user's folder in it; write the ``tmpfiles.d`` entry."""
    found = RunDirs()
    parent = _parent(root, found)
    if parent is not None:
        try:
            for user in users:
                _user_folder(parent, root, user, found)
        finally:
            os.close(parent)
    conf = system_root / TMPFILES
    old = conf.read_text() if conf.is_file() else ""
    new = tmpfiles_text(users, old, root)
    if new != old:
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text(new)
        found.changes.append(f"wrote {conf} (makes them again at boot where systemd runs)")
    return found
