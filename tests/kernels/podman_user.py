"""Commands as the Podman test user (tests/conftest.py's PODMAN_USER), logged in the way that
user's Jupyter server would be: nothing of root's environment but what is named."""

from __future__ import annotations

import pwd


def as_user(user: pwd.struct_passwd, *command: str, **env: str) -> list[str]:
    """``command`` as ``user``, with ``env`` added to a login's bare environment."""
    return ["runuser", "-u", user.pw_name, "--", "env", "-i", f"HOME={user.pw_dir}",
            f"USER={user.pw_name}", "PATH=/usr/local/bin:/usr/bin:/bin",
            f"XDG_RUNTIME_DIR=/run/user/{user.pw_uid}",
            *(f"{k}={v}" for k, v in env.items()), *command]  # fmt: skip
