"""Commands run as a hub user from root's ``hub setup``, so that nothing of root's reaches them
and nothing of the user's is run by root's hand.

Each command gets no controlling terminal and a session of its own (a program of the user's
could otherwise type into root's shell with TIOCSTI), stdin from ``/dev/null``, no descriptor
of root's, a bare environment, and the user's ids through ``setpriv`` (no PAM, no login
shell). The engine it starts reads only root-owned configuration: ``XDG_CONFIG_HOME`` is a
root-owned folder that ``hub setup`` writes (``containers/storage.conf`` for one storage
driver, no ``containers.conf``, so Podman reads the system's own), and
``CONTAINERS_STORAGE_CONF`` / ``CONTAINERS_REGISTRIES_CONF`` name root-owned files, so the
``conmon_path``, ``runtime`` or ``mount_program`` a user wrote in ``~/.config/containers`` is
never run by setup. What such a command prints is the user's to choose: :func:`clean` makes
it one line without terminal escapes before it reaches root's report.
"""

from __future__ import annotations

import pwd
import re
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ..rundir import hub_user_dir

__all__ = ["ENGINE_CONF_DIR", "SAFE_PATH", "AsUser", "clean", "default_run_dir", "root_owned"]

ENGINE_CONF_DIR = Path("/etc/nbcontainers/hub")
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
SYSTEM_REGISTRIES = Path("/etc/containers/registries.conf")
_NOISE = re.compile(r"level=(warning|info|debug)")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean(text: str, limit: int = 400) -> str:
    """``text`` a user's process printed, safe for root's terminal: control characters (escape
    sequences included) shown as ``?``, newlines as `` | ``, Podman's warnings left out (its
    error is what the admin needs), the last ``limit`` characters."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    kept = [line for line in lines if not _NOISE.search(line)] or lines
    return _CONTROL.sub("?", " | ".join(kept))[-limit:]


def root_owned(path: Path) -> bool:
    """Whether ``path`` and every folder above it belong to root and only root may write them
    (no link anywhere on the way): a file a user could swap is never handed to an engine."""
    for part in [path, *path.parents]:
        try:
            info = part.lstat()
        except OSError:
            return False
        if stat.S_ISLNK(info.st_mode) or info.st_uid != 0:
            return False
        if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not info.st_mode & stat.S_ISVTX:
            return False
    return True


@dataclass(frozen=True)
class AsUser:
    """How ``hub setup`` runs commands as one user: ``config_home`` is the root-owned
    ``XDG_CONFIG_HOME`` for the user's storage driver, ``run_dir`` the user's runtime folder."""

    user: pwd.struct_passwd
    config_home: Path
    run_dir: Path | None = None

    @property
    def name(self) -> str:
        return self.user.pw_name

    def argv(self, *command: str) -> list[str]:
        """``command`` under the user's ids and groups (``setpriv`` needs root)."""
        return [
            "setpriv",
            f"--reuid={self.user.pw_uid}",
            f"--regid={self.user.pw_gid}",
            "--init-groups",
            "--",
            *command,
        ]

    def env(self) -> dict[str, str]:
        storage = self.config_home / "containers" / "storage.conf"
        registries = (
            SYSTEM_REGISTRIES
            if root_owned(SYSTEM_REGISTRIES)
            else self.config_home / "containers" / "registries.conf"
        )
        env = {
            "HOME": self.user.pw_dir,
            "USER": self.user.pw_name,
            "LOGNAME": self.user.pw_name,
            "PATH": SAFE_PATH,
            "LANG": "C.UTF-8",
            "XDG_CONFIG_HOME": str(self.config_home),
            "CONTAINERS_STORAGE_CONF": str(storage),
            "CONTAINERS_REGISTRIES_CONF": str(registries),
        }
        if self.run_dir is not None:
            env["XDG_RUNTIME_DIR"] = str(self.run_dir)
        return env

    def run(
        self,
        *command: str,
        timeout: float = 120,
        stdin: int | IO[bytes] | None = None,
        check: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``command`` as the user (see the module docstring); output captured as text."""
        return subprocess.run(
            self.argv(*command),
            env=self.env(),
            stdin=subprocess.DEVNULL if stdin is None else stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd="/",
            start_new_session=True,  # no controlling terminal: root's can't be reached
            close_fds=True,
            check=check,
        )


def default_run_dir(user: pwd.struct_passwd) -> Path:
    """The runtime folder the user's own engine will use (``nbcontainers.rundir``'s order, for
    a hub user whose server sets no ``XDG_RUNTIME_DIR``): logind's ``/run/user/UID`` where it
    exists and is the user's, else the one ``hub setup`` makes."""
    login = Path(f"/run/user/{user.pw_uid}")
    try:
        info = login.lstat()
    except OSError:
        return hub_user_dir(user.pw_uid)
    if stat.S_ISDIR(info.st_mode) and info.st_uid == user.pw_uid and not info.st_mode & 0o077:
        return login
    return hub_user_dir(user.pw_uid)
