"""The kernelspec's plain argv on a user's own rootless Podman (the hub's engine), run as the
Podman test user by podman_launch_probe.py: a frontend that launches kernelspecs itself (VS
Code over Remote-SSH to the shared server) gets a container kernel in the user's engine, in
the notebook's folder, that interrupts, restarts into a fresh container and goes with its
launcher."""

from __future__ import annotations

import json
import pwd
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ..kernels.podman_user import as_user, workspace  # noqa: F401 (a fixture)

pytestmark = pytest.mark.docker
PROBE = Path(__file__).with_name("podman_launch_probe.py")


def test_the_plain_argv_on_a_users_rootless_podman(
    podman_runtime: object,
    workspace: tuple[pwd.struct_passwd, Path, Path],  # noqa: F811
) -> None:
    user, work, jupyter_path = workspace
    done = subprocess.run(
        as_user(user, sys.executable, str(PROBE), str(work),
                JUPYTER_PATH=str(jupyter_path), NBCONTAINERS_CONFIG_DIR=str(work / "config"),
                XDG_DATA_HOME=str(work / "data"), NBCONTAINERS_LAUNCH_IDLE="30"),
        capture_output=True, text=True, timeout=600, cwd=str(work), check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    print(seen)
    assert seen["provisioner"] == "LocalProvisioner"  # the argv ran: no provisioner
    hostname, cwd, uid, name, image = seen["where"]
    assert hostname not in (seen["host"], socket.gethostname())  # not a host kernel
    assert (cwd, uid, name, image) == (str(work), 0, user.pw_name, "python")  # root in the userns
    assert seen["containers"] == 1
    ename, took = seen["interrupt"]
    assert ename == "KeyboardInterrupt" and took < 10
    assert seen["restart"] == ["NameError", 1, False]  # a fresh container, state gone
    left, took = seen["after_sigkill"]
    assert left == 0 and took < 60
