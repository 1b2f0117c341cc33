"""A kernel at home on a user's own rootless Podman, for real (podman_home_probe.py runs as the
test user): root inside the user namespace, with the user's name in USER/LOGNAME and
getpass; ``~`` is the user's home path, backed by a folder of their data dir that outlives
the kernel and is theirs on the host; ``%pip install`` (pip's user install: PIP_USER, root may
write the image's own site-packages) imports at once and after a restart, and its command
runs."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest

from .podman_user import as_user
from .test_home_docker import _wheel

pytestmark = pytest.mark.docker
PROBE = Path(__file__).with_name("podman_home_probe.py")


def test_a_kernel_at_home_on_rootless_podman(
    podman_runtime: object, workspace: tuple[pwd.struct_passwd, Path, Path]
) -> None:
    user, work, jupyter_path = workspace
    wheel = _wheel(work)
    os.chown(wheel, user.pw_uid, user.pw_gid)
    data = work / "data"
    done = subprocess.run(
        as_user(user, sys.executable, str(PROBE), str(work), wheel.name,
                JUPYTER_PATH=str(jupyter_path), NBCONTAINERS_CONFIG_DIR=str(work / "config"),
                XDG_DATA_HOME=str(data)),
        capture_output=True, text=True, timeout=600, cwd=str(work), check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    name = user.pw_name
    assert seen["who"] == [name, name, name, "root", user.pw_dir, 0]
    assert "Successfully installed nbctiny-0.1" in seen["pip"], seen["pip"]
    value, where = seen["at_once"].split()
    userbase = f"{user.pw_dir}/.local/share/nbcontainers/python/python"
    assert value == "42" and where.startswith(userbase + "/lib/python3.11/site-packages/")
    # The package's command runs from the notebook (its user base's bin is on PATH).
    assert seen["after_restart"].split() == ["42", "kept", "tiny", "42"], seen["after_restart"]
    kept = data / "nbcontainers" / "home" / "kept.txt"
    assert kept.read_text() == "kept"
    assert (kept.stat().st_uid, kept.stat().st_gid) == (user.pw_uid, user.pw_gid)
