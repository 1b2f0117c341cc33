"""Commands as the Podman test user (tests/conftest.py's PODMAN_USER), logged in the way that
user's Jupyter server would be: nothing of root's environment but what is named.

The runtime folder (engine socket, kernel-start lock) is ``/run/user/UID``, as a login makes
it and as tests/conftest.py's engine fixture connects to it: made here, the user's and 0700
(what nbcontainers.rundir accepts), where it is missing (a reboot empties /run). The
``workspace`` fixture (imported by the conftests of the tests that use it) gives that user a
folder with the nbc-* kernelspecs."""

from __future__ import annotations

import os
import pwd
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nbcontainers.catalog.entries import load_catalog
from nbcontainers.catalog.kernelspecs import install_kernelspecs
from nbcontainers.kernels.netns import holder_name


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


def user_folder(user: pwd.struct_passwd, prefix: str) -> tuple[Path, Path]:
    """A new folder in ``user``'s home, theirs, holding the catalog's nbc-* kernelspecs:
    (the folder, the Jupyter data folder to put on JUPYTER_PATH)."""
    work = Path(user.pw_dir) / f"{prefix}-{os.getpid()}"
    work.mkdir()
    install_kernelspecs(load_catalog(include_user=False), prefix=str(work / "jupyter"))
    for path in [work, *work.rglob("*")]:
        os.chown(path, user.pw_uid, user.pw_gid)
    return work, work / "jupyter" / "share" / "jupyter"


@pytest.fixture
def workspace(podman_runtime: Any) -> Iterator[tuple[pwd.struct_passwd, Path, Path]]:
    """(the test user, a folder that user owns, the Jupyter data folder in it holding the
    nbc-* kernelspecs); removed afterwards, with the user's network holder."""
    from .. import conftest

    user = pwd.getpwnam(conftest.PODMAN_USER)
    ref = load_catalog()["python"].ref
    if podman_runtime.image_info(ref) is None:
        pytest.fail(f"{ref} is not in {user.pw_name}'s image store: run scripts/ensure-podman.sh")
    work, jupyter_path = user_folder(user, "nbc-test")
    yield user, work, jupyter_path
    shutil.rmtree(work, ignore_errors=True)
    holder = podman_runtime.state(holder_name(user.pw_name))
    if holder is not None:
        podman_runtime.remove(holder.id)
