"""Sub-uid/sub-gid ranges (``/etc/subuid``, ``/etc/subgid``): which users lack one, and the
``usermod`` line that gives them a free one."""

from __future__ import annotations

import os
import pwd
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "RANGE_SIZE",
    "SubidRange",
    "UserCheck",
    "check_users",
    "hub_users",
    "read_ranges",
    "usermod_command",
]

RANGE_SIZE = 65536  # what `useradd` gives: enough for every uid a Debian image uses
FIRST_SUBID = 100000  # where `useradd` starts handing out ranges (login.defs SUB_UID_MIN)


@dataclass(frozen=True)
class SubidRange:
    """One line of ``/etc/subuid`` or ``/etc/subgid``: ``owner:start:count``."""

    owner: str
    start: int
    count: int

    @property
    def end(self) -> int:
        return self.start + self.count


@dataclass(frozen=True)
class UserCheck:
    """One user's state: which ranges are missing and the command that adds them."""

    name: str
    uid: int
    home: str
    has_subuid: bool
    has_subgid: bool
    fix: tuple[str, ...]  # the usermod argv, empty when nothing is missing

    @property
    def ok(self) -> bool:
        return self.has_subuid and self.has_subgid


def read_ranges(path: Path) -> list[SubidRange]:
    """The ranges in one file; a missing file has none, malformed lines are skipped."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    found = []
    for line in lines:
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            found.append(SubidRange(parts[0], int(parts[1]), int(parts[2])))
    return found


def hub_users(names: Sequence[str] = ()) -> list[pwd.struct_passwd]:
    """The users named (each must exist), else every user with uid >= 1000 and a home folder
    (``nobody`` and system accounts excluded)."""
    if names:
        return [pwd.getpwnam(name) for name in names]
    return sorted(
        (
            entry
            for entry in pwd.getpwall()
            if 1000 <= entry.pw_uid < 65534 and os.path.isdir(entry.pw_dir)
        ),
        key=lambda entry: entry.pw_uid,
    )


def _owns(ranges: Iterable[SubidRange], user: pwd.struct_passwd) -> bool:
    return any(r.owner in (user.pw_name, str(user.pw_uid)) for r in ranges)


def usermod_command(name: str, start: int, count: int = RANGE_SIZE) -> tuple[str, ...]:
    """``usermod --add-subuids A-B --add-subgids A-B NAME`` (B inclusive, as usermod wants)."""
    span = f"{start}-{start + count - 1}"
    return ("usermod", "--add-subuids", span, "--add-subgids", span, name)


def check_users(
    users: Sequence[pwd.struct_passwd],
    subuid: Path = Path("/etc/subuid"),
    subgid: Path = Path("/etc/subgid"),
) -> list[UserCheck]:
    """Check each user; a missing range gets a proposed one that overlaps no existing range
    in either file (nor another proposed one), so the commands can all be run as printed."""
    uids, gids = read_ranges(subuid), read_ranges(subgid)
    next_free = max([FIRST_SUBID, *(r.end for r in uids + gids)])
    checks = []
    for user in users:
        has_uid, has_gid = _owns(uids, user), _owns(gids, user)
        fix: tuple[str, ...] = ()
        if not (has_uid and has_gid):
            full = usermod_command(user.pw_name, next_free)
            # Only the missing half: a second sub-uid range for one user is legal but untidy.
            fix = (
                full[:1]
                + (full[1:3] if not has_uid else ())
                + (full[3:5] if not has_gid else ())
                + full[5:]
            )
            next_free += RANGE_SIZE
        checks.append(UserCheck(user.pw_name, user.pw_uid, user.pw_dir, has_uid, has_gid, fix))
    return checks
