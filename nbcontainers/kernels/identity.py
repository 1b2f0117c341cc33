"""Who a kernel runs as: the server process's identity (:class:`Host`) and the uid:gid a
kernel container gets from it, on a root engine and on a rootless one."""

from __future__ import annotations

import os
import pwd
import socket
from dataclasses import dataclass

from ..errors import ConfigError
from ..labels import process_start_time

__all__ = ["ROOTLESS_USER", "Host", "kernel_user"]

ROOTLESS_USER = "0:0"  # in a rootless engine's user namespace: the server's own user


@dataclass(frozen=True)
class Host:
    """The Jupyter server process that starts kernels: who it runs as and where."""

    owner: str
    uid: int
    gid: int
    hostname: str
    pid: int
    started: str  # the process's start time (labels.process_start_time)

    @classmethod
    def current(cls) -> Host:
        # The passwd name, as the policy labels and counts kernels: $USER/$LOGNAME (which
        # getpass.getuser() reads first) would let a user pass as someone else.
        try:
            owner = pwd.getpwuid(os.getuid()).pw_name
        except KeyError:  # a uid without a passwd entry (some containers, Hub)
            owner = str(os.getuid())
        pid = os.getpid()
        return cls(
            owner, os.getuid(), os.getgid(), socket.gethostname(), pid, process_start_time(pid)
        )

    @property
    def user(self) -> str:
        return f"{self.uid}:{self.gid}"


def kernel_user(requested: str, host: Host, rootless: bool = False) -> str:
    """The uid:gid the kernel runs as: the server's own unless ``requested`` names another,
    which only a root server may do (it then hands the private folder to that user).

    On a rootless engine the container's root *is* the server's user on the host (any other
    uid maps into the user's sub-uid range, and files it writes would not be the user's), so
    the kernel runs as root inside: capabilities dropped and no new privileges, as always."""
    if rootless:
        if requested and requested not in (host.user, ROOTLESS_USER):
            raise ConfigError(
                f"user={requested!r}: on a rootless engine kernels run as you (your uid is the "
                "container's root), and another uid would write files you don't own. Remove "
                "the 'user' setting."
            )
        return ROOTLESS_USER
    if not requested or requested == host.user:
        return host.user
    try:
        _uid, _gid = (int(part) for part in requested.split(":"))
    except ValueError:
        raise ConfigError(
            f"user={requested!r}: give numeric 'uid:gid', e.g. '1000:1000'."
        ) from None
    if host.uid != 0:
        raise ConfigError(
            f"user={requested!r} differs from the server's own uid:gid {host.user}; only a "
            "server running as root can start kernels as another user. Remove the 'user' setting."
        )
    return requested
