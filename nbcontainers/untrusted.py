"""Files a kernel left for this process in a folder both can write: taken as private copies,
never through a link, plain files and folders only, and only the kernel's or our own.

Snapshots (wheels the kernel's pip built) and serving exports (the saved model) go through a
folder the kernel writes, often shared (mode 1777 in the temp folder, or the workspace). A
hostile kernel can leave a link there (``weights -> ~/.ssh/id_rsa``: a plain read would copy
the user's key into the folder and on into an image layer) or a FIFO (a read would hang for
ever); another local user can leave a file under the name we expect. So every file is opened
with ``O_NOFOLLOW | O_NONBLOCK`` from its folder's descriptor, checked with ``fstat`` (a plain
file, owned by an expected uid) and copied from that descriptor into a folder of ours.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import NbcontainersError

__all__ = ["copy_left_file", "copy_left_tree", "kernel_owners"]

_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def kernel_owners(evaluate: Callable[[str, str], Any], folder: str | Path) -> frozenset[int]:
    """Whose files in ``folder`` are the kernel's or ours: our uid, and the owner of a file
    the kernel makes there now under a name nobody could have guessed (a container kernel's
    uid as this host sees it, through any user-namespace mapping)."""
    marker = Path(folder) / f".nbc-owner-{secrets.token_hex(8)}"
    flags = "os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW"
    make = f"(lambda os: os.close(os.open({str(marker)!r}, {flags}, 0o600)))(__import__('os'))"
    try:
        evaluate("", make)
        info = marker.lstat()
    except Exception:  # a kernel that cannot write there: only our own files count
        return frozenset({os.getuid()})
    finally:
        marker.unlink(missing_ok=True)
    if not stat.S_ISREG(info.st_mode):
        return frozenset({os.getuid()})
    return frozenset({os.getuid(), info.st_uid})


def copy_left_file(
    path: Path, target: Path, owners: frozenset[int], error: type[NbcontainersError]
) -> None:
    """Copy the file the kernel left at ``path`` to ``target`` (made new), or raise ``error``
    naming what is wrong with it."""
    dir_fd = _open_dir(path.parent, error)
    try:
        _copy_from(dir_fd, path.name, path, target, owners, error)
    finally:
        os.close(dir_fd)


def copy_left_tree(
    folder: Path, target: Path, owners: frozenset[int], error: type[NbcontainersError]
) -> None:
    """Copy the tree the kernel left in ``folder`` to ``target`` (made new): folders and plain
    files only, each checked as in :func:`copy_left_file`."""
    dir_fd = _open_dir(folder, error)
    try:
        _copy_tree(dir_fd, folder, target, owners, error)
    finally:
        os.close(dir_fd)


def _copy_tree(
    dir_fd: int,
    shown: Path,
    target: Path,
    owners: frozenset[int],
    error: type[NbcontainersError],
) -> None:
    _check_owner(os.fstat(dir_fd), shown, owners, error)
    target.mkdir(mode=0o755)
    for name in sorted(os.listdir(dir_fd)):
        try:
            info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            continue  # gone while we looked: the kernel's to remove, nothing to copy
        if stat.S_ISDIR(info.st_mode):
            child = _open_at(dir_fd, name, _DIR, shown / name, error)
            try:
                _copy_tree(child, shown / name, target / name, owners, error)
            finally:
                os.close(child)
        else:
            _copy_from(dir_fd, name, shown / name, target / name, owners, error)


def _copy_from(
    dir_fd: int,
    name: str,
    shown: Path,
    target: Path,
    owners: frozenset[int],
    error: type[NbcontainersError],
) -> None:
    fd = _open_at(dir_fd, name, _FILE, shown, error)
    with os.fdopen(fd, "rb") as source:
        info = os.fstat(fd)
        # Checked on the open descriptor: what is read below is what was checked, even if
        # the name is swapped for a link a moment later.
        if not stat.S_ISREG(info.st_mode):
            raise error(
                f"The kernel left {shown} as something that is not a plain file (a FIFO, a "
                "socket or a device): refused, nothing was written."
            )
        _check_owner(info, shown, owners, error)
        with open(target, "xb") as copy:
            shutil.copyfileobj(source, copy)


def _check_owner(
    info: os.stat_result, shown: Path, owners: frozenset[int], error: type[NbcontainersError]
) -> None:
    if info.st_uid not in owners:
        raise error(
            f"{shown} belongs to uid {info.st_uid}, neither you nor the kernel: another user "
            "left it in the shared folder. Refused, nothing was written; try again."
        )


def _open_dir(folder: Path, error: type[NbcontainersError]) -> int:
    return _open_at(None, str(folder), _DIR, folder, error)


def _open_at(
    dir_fd: int | None, name: str, flags: int, shown: Path, error: type[NbcontainersError]
) -> int:
    try:
        return os.open(name, flags, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ENOTDIR:
            raise error(f"{shown} is not a folder: refused, nothing was written.") from None
        if exc.errno == errno.ELOOP:
            raise error(
                f"The kernel left {shown} as a link: refused (a kernel never chooses which of "
                "your files this reads). Nothing was written."
            ) from None
        raise error(f"{shown} can't be read ({exc.strerror}); nothing was written.") from None
