"""Files ``hub setup`` reads and writes in users' homes, as root, without following a link.

A user owns everything in their home and may have replaced any part of a path with a link to
a file of root's. So every folder is opened from its parent's descriptor with ``O_NOFOLLOW``
and must belong to the user (or root); a file is read only when it is a regular file of the
user's with one name (a hard link to ``/etc/shadow`` is not the user's to hand over); a file is
written as a fresh file beside the old one, given to the user, then renamed over it (a rename
replaces a link, it never writes through one). A link where a file or folder should be is
refused with the fix, never followed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Iterator, Sequence

__all__ = ["HomeRefused", "home_mode", "read_file", "user_dir", "write_file"]

MAX_READ = 1 << 20  # a storage.conf is a few lines; more is not one setup wrote or reads
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class HomeRefused(Exception):
    """A path in a user's home that setup will not use; ``str()`` says why and the fix."""


def _check_owner(info: os.stat_result, uid: int, where: str) -> None:
    if info.st_uid not in (uid, 0):
        raise HomeRefused(f"{where} belongs to uid {info.st_uid}, not to the user ({uid})")


def _open_dir(parent: int | None, name: str, where: str) -> int:
    try:
        return os.open(name, _DIR, dir_fd=parent)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):  # a link; a file where a folder goes
            raise HomeRefused(
                f"{where} is a link or not a folder; setup follows no link in a "
                "user's home. Remove it and rerun hub setup"
            ) from None
        raise


@contextlib.contextmanager
def user_dir(
    home: str, parts: Sequence[str], uid: int, gid: int, create: bool = False
) -> Iterator[int | None]:
    """A descriptor of ``home/parts...`` (each part opened without following links, each
    owned by the user or root), or ``None`` when a part is missing and ``create`` is false;
    missing folders are made (0700, the user's) when it is true."""
    fd = _open_dir(None, home, home)
    try:
        _check_owner(os.fstat(fd), uid, home)
        where = home
        for part in parts:
            where = f"{where}/{part}"
            try:
                child = _open_dir(fd, part, where)
            except FileNotFoundError:
                if not create:
                    yield None
                    return
                os.mkdir(part, 0o700, dir_fd=fd)
                child = _open_dir(fd, part, where)
                os.fchown(child, uid, gid)
            os.close(fd)
            fd = child
            _check_owner(os.fstat(fd), uid, where)
        yield fd
    finally:
        os.close(fd)


def read_file(folder: int, name: str, uid: int, where: str) -> str | None:
    """The text of ``name`` in ``folder`` (a descriptor from :func:`user_dir`); ``None`` when
    there is none. Refused: a link, anything but a regular file, a file of someone else's or
    with a second name (a hard link), a file over 1 MiB."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     dir_fd=folder)  # fmt: skip
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise HomeRefused(
                f"{where} is a link; setup follows no link in a user's home. "
                f"Remove it (as the user: rm {where}) and rerun hub setup"
            ) from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise HomeRefused(f"{where} is not a regular file. Remove it and rerun hub setup")
        if info.st_uid != uid or info.st_nlink != 1 or info.st_size > MAX_READ:
            raise HomeRefused(
                f"{where} is not a plain file of the user's (owner uid {info.st_uid}, "
                f"{info.st_nlink} names, {info.st_size} bytes). Remove it and rerun hub setup"
            )
        with os.fdopen(os.dup(fd), "rb") as f:
            return f.read(MAX_READ).decode("utf-8", errors="replace")
    finally:
        os.close(fd)


def write_file(folder: int, name: str, text: str, uid: int, gid: int, where: str) -> None:
    """Replace ``name`` in ``folder`` with ``text`` (mode 0644, the user's), atomically; a
    link at ``name`` is refused, not replaced (the user put it there)."""
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISLNK(os.stat(name, dir_fd=folder, follow_symlinks=False).st_mode):
            raise HomeRefused(
                f"{where} is a link; setup follows no link in a user's home. "
                f"Remove it (as the user: rm {where}) and rerun hub setup"
            )
    tmp = f".{name}.nbc-{secrets.token_hex(6)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o644, dir_fd=folder)  # fmt: skip
    try:
        with os.fdopen(fd, "wb", closefd=False) as f:
            f.write(text.encode())
            f.flush()
            os.fsync(f.fileno())
        os.fchown(fd, uid, gid)
        os.fchmod(fd, 0o644)
    except BaseException:
        os.unlink(tmp, dir_fd=folder)
        raise
    finally:
        os.close(fd)
    os.rename(tmp, name, src_dir_fd=folder, dst_dir_fd=folder)


def home_mode(home: str) -> tuple[int, int]:
    """(descriptor, mode) of the home folder opened without following a link; the caller
    closes the descriptor."""
    fd = _open_dir(None, home, home)
    return fd, stat.S_IMODE(os.fstat(fd).st_mode)
