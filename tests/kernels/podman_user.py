"""Commands as the Podman test user (tests/conftest.py's PODMAN_USER), logged in the way that
user's Jupyter server would be: nothing of root's environment but what is named.

The runtime folder (engine socket, kernel-start lock) is ``/run/user/UID``, as a login makes
it and as tests/conftest.py's engine fixture connects to it: made here, the user's and 0700
(what nbcontainers.rundir accepts), where it is missing (a reboot empties /run)."""

from __future__ import annotations

import os
import pwd
from pathlib import Path


def run_dir(user: pwd.struct_passwd) -> Path:
    """The user's runtime folder, made (as root) where it is missing; never someone else's."""
    folder = Path(f"/run/user/{user.pw_uid}")
    if not folder.is_dir():
        folder.parent.mkdir(mode=0o755, exist_ok=True)
        folder.mkdir(mode=0o700)
        os.chown(folder, user.pw_uid, user.pw_gid)
    return folder


def as_user(user: pwd.struct_passwd, *command: str, **env: str) -> list[str]:
    """``command`` as ``user``, with ``env`` added to a login's bare environment."""
    return ["runuser", "-u", user.pw_name, "--", "env", "-i", f"HOME={user.pw_dir}",
            f"USER={user.pw_name}", "PATH=/usr/local/bin:/usr/bin:/bin",
            f"XDG_RUNTIME_DIR={run_dir(user)}",
            *(f"{k}={v}" for k, v in env.items()), *command]  # fmt: skip
