"""The group of hub users, the only ones who may read the shared image store.

Why a group: a hub user runs these images as root of their own user namespace, where every
file of the image is theirs to read; giving them the files on the host as well costs nothing.
Every other host user (service accounts, local users outside the hub) reaches nothing: the
store's top folder is ``root:GROUP 0750``. ``hub setup`` makes the group and adds each hub user;
membership counts from the user's next login or server start.
"""

from __future__ import annotations

import grp
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["HUB_GROUP", "GroupResult", "ensure_group"]

HUB_GROUP = "nbcontainers"


@dataclass
class GroupResult:
    gid: int | None = None
    changes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _run(argv: list[str], res: GroupResult) -> bool:
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL
    )
    if done.returncode != 0:
        res.problems.append(f"`{' '.join(argv)}` failed: {done.stderr.strip()[-300:]}")
    return done.returncode == 0


def ensure_group(users: Sequence[str], name: str = HUB_GROUP) -> GroupResult:
    """Make the group (a system group) when missing and add each of ``users`` to it."""
    res = GroupResult()
    try:
        entry = grp.getgrnam(name)
    except KeyError:
        if not _run(["groupadd", "--system", name], res):
            return res
        entry = grp.getgrnam(name)
        res.changes.append(f"made group {name} (gid {entry.gr_gid}): the shared store's readers")
    res.gid = entry.gr_gid
    for user in users:
        if user in entry.gr_mem:
            continue
        if _run(["usermod", "--append", "--groups", name, user], res):
            res.changes.append(
                f"added {user} to group {name} (counts from the user's next server start)"
            )
    return res
