"""Sealing the shared image store (``store.py``): readable by the hub's group only, with
no program in it that runs with more rights than its caller, its parent folders untouched."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Sealed", "seal_store", "unreachable_parents"]


@dataclass
class Sealed:
    """What :func:`seal_store` changed."""

    modes: int = 0
    setid_removed: list[str] = field(default_factory=list)
    caps_removed: list[str] = field(default_factory=list)


_SETID = stat.S_ISUID | stat.S_ISGID
_CAPS = "security.capability"


def seal_store(root: Path, gid: int) -> Sealed:
    """Make the store readable by the group ``gid`` and nobody else, with nothing in it that
    runs with more rights than its caller.

    - the top folder is ``root:gid 0750``: the one gate; other host users reach nothing below;
    - below it, image and layer folders are ``a+rX`` as before (users' rootless engines read
      every file, whichever image uid owns it, and copy it into their containers; only group
      members get this far), Podman's own folders (``libpod``, ``tmp``) stay private;
    - no regular file keeps a setuid/setgid bit or a file capability (``security.capability``):
      a hub user could otherwise run an image's ``su`` or ``mount``, from a base that is never
      patched, as host root. Kernels run with ``no-new-privileges`` and no capabilities, so
      containers lose nothing they used.

    The folders above ``root`` are never touched (see :func:`unreachable_parents`)."""
    done = Sealed()
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) != (0, gid, 0o750):
            os.fchown(fd, 0, gid)
            os.fchmod(fd, 0o750)
            done.modes += 1
    finally:
        os.close(fd)
    for top in sorted(root.iterdir()):
        if top.is_symlink():
            continue
        private = top.name in ("libpod", "tmp", "mounts")
        for path in [top, *_walk(top)]:
            mode = path.lstat().st_mode
            if stat.S_ISREG(mode):
                _strip(path, mode, done)
                mode = path.lstat().st_mode
            if private or not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
                continue
            want = mode | stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
            if stat.S_ISDIR(mode) or mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH):
                want |= stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH
            if want != mode:
                os.chmod(path, stat.S_IMODE(want), follow_symlinks=False)
                done.modes += 1
    return done


def _strip(path: Path, mode: int, done: Sealed) -> None:
    """Remove a setuid/setgid bit and file capabilities from one regular file."""
    if mode & _SETID:
        os.chmod(path, stat.S_IMODE(mode) & ~_SETID, follow_symlinks=False)
        done.setid_removed.append(str(path))
    try:
        has_caps = _CAPS in os.listxattr(path, follow_symlinks=False)
    except OSError:
        has_caps = False
    if has_caps:
        os.removexattr(path, _CAPS, follow_symlinks=False)
        done.caps_removed.append(str(path))


def _walk(top: Path) -> list[Path]:
    found: list[Path] = []
    if not top.is_dir():
        return found
    for dirpath, dirnames, filenames in os.walk(top):
        found += [Path(dirpath, n) for n in dirnames + filenames]
    return found


def unreachable_parents(root: Path, gid: int) -> list[str]:
    """The folders above ``root`` that a member of ``gid`` cannot pass through (no search
    bit for others, nor for the group when the folder is that group's): ``hub setup`` reports
    them, it never widens a folder it did not make."""
    blocked = []
    for folder in root.parents:
        info = folder.stat()
        ok = info.st_mode & stat.S_IXOTH or (info.st_gid == gid and info.st_mode & stat.S_IXGRP)
        if not ok:
            blocked.append(f"{folder} ({stat.S_IMODE(info.st_mode):04o})")
    return blocked
