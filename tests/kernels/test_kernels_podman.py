"""Container kernels on a user's own rootless Podman, for real: the test user's Jupyter side
runs as that user (runtime "auto" picks their engine), and root checks what it left on the
host and in the engine."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nbcontainers.catalog import load_catalog
from nbcontainers.kernels.kernelspecs import install_kernelspecs
from nbcontainers.kernels.netns import holder_name
from nbcontainers.labels import KERNEL_ID

pytestmark = pytest.mark.docker
PROBE = Path(__file__).with_name("podman_probe.py")


@pytest.fixture
def workspace(podman_runtime: object) -> object:
    from .. import conftest

    user = pwd.getpwnam(conftest.PODMAN_USER)
    ref = load_catalog()["python"].ref
    if podman_runtime.image_info(ref) is None:  # type: ignore[attr-defined]
        pytest.fail(f"{ref} is not in {user.pw_name}'s image store: run scripts/ensure-podman.sh")
    work = Path(user.pw_dir) / f"nbc-test-{os.getpid()}"
    work.mkdir()
    prefix = work / "jupyter"
    install_kernelspecs(load_catalog(include_user=False), prefix=str(prefix))
    for path in [work, *work.rglob("*")]:
        os.chown(path, user.pw_uid, user.pw_gid)
    yield user, work, prefix / "share" / "jupyter"
    shutil.rmtree(work, ignore_errors=True)
    holder = podman_runtime.state(holder_name(user.pw_name))  # type: ignore[attr-defined]
    if holder is not None:
        podman_runtime.remove(holder.id)  # type: ignore[attr-defined]


def test_a_kernel_on_the_users_rootless_podman(podman_runtime: object, workspace: object) -> None:
    user, work, jupyter_path = workspace  # type: ignore[misc]
    before = {s.id for s in podman_runtime.list({KERNEL_ID: None})}  # type: ignore[attr-defined]
    done = subprocess.run(
        ["runuser", "-u", user.pw_name, "--", "env", "-i", f"HOME={user.pw_dir}",
         f"USER={user.pw_name}", "PATH=/usr/local/bin:/usr/bin:/bin",
         f"XDG_RUNTIME_DIR=/run/user/{user.pw_uid}", f"JUPYTER_PATH={jupyter_path}",
         sys.executable, str(PROBE), str(work)],
        capture_output=True, text=True, timeout=240, cwd=str(work), check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["engine"] == "podman"
    # Root inside the user namespace is the user on the host: the file is the user's.
    assert seen["output"].split() == ["0", str(work), "python"]
    written = work / "from-kernel.txt"
    assert written.read_text() == "hi"
    assert (written.stat().st_uid, written.stat().st_gid) == (user.pw_uid, user.pw_gid)
    assert seen["interrupted"] == "KeyboardInterrupt" and seen["interrupt_s"] < 5
    first, second = seen["containers"]
    assert first != second and seen["after_restart"].strip() == "True"
    # Shutdown removed both containers; nothing else of this test's is left in the engine.
    for cid in (first, second):
        assert podman_runtime.state(cid) is None  # type: ignore[attr-defined]
    left = [s for s in podman_runtime.list({KERNEL_ID: None}) if s.id not in before]  # type: ignore[attr-defined]
    assert left == []
