"""The warm pool on a user's own rootless Podman, for real: the test user's Jupyter side runs
as that user (podman_pool_probe.py), and root checks what it saw and what it left. A pooled
kernel there equals a cold one (cwd, env, ids, files, import path, argv, mounts, privileges,
IPython's notes of its start, how the engine made the container), its member bound its
sockets before the take, a restart takes a fresh member, and exit leaves no pooled
container."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nbcontainers.catalog import load_catalog
from nbcontainers.kernels.kernelspecs import install_kernelspecs
from nbcontainers.kernels.netns import holder_name
from nbcontainers.kernels.pooled import POOL_ROLE
from nbcontainers.labels import ROLE

pytestmark = pytest.mark.docker
PROBE = Path(__file__).with_name("podman_pool_probe.py")


@pytest.fixture
def workspace(podman_runtime: Any) -> Iterator[tuple[pwd.struct_passwd, Path, Path]]:
    """A folder the test user owns, with the nbc-* kernelspecs in it; removed afterwards,
    with the user's network holder."""
    from .. import conftest

    user = pwd.getpwnam(conftest.PODMAN_USER)
    ref = load_catalog()["python"].ref
    if podman_runtime.image_info(ref) is None:
        pytest.fail(f"{ref} is not in {user.pw_name}'s image store: run scripts/ensure-podman.sh")
    work = Path(user.pw_dir) / f"nbc-pool-test-{os.getpid()}"
    work.mkdir()
    prefix = work / "jupyter"
    install_kernelspecs(load_catalog(include_user=False), prefix=str(prefix))
    for path in [work, *work.rglob("*")]:
        os.chown(path, user.pw_uid, user.pw_gid)
    yield user, work, prefix / "share" / "jupyter"
    shutil.rmtree(work, ignore_errors=True)
    holder = podman_runtime.state(holder_name(user.pw_name))
    if holder is not None:
        podman_runtime.remove(holder.id)


def _as_user(user: pwd.struct_passwd, *command: str, **env: str) -> list[str]:
    """``command`` as ``user`` logged in the way their Jupyter server would be."""
    return ["runuser", "-u", user.pw_name, "--", "env", "-i", f"HOME={user.pw_dir}",
            f"USER={user.pw_name}", "PATH=/usr/local/bin:/usr/bin:/bin",
            f"XDG_RUNTIME_DIR=/run/user/{user.pw_uid}",
            *(f"{k}={v}" for k, v in env.items()), *command]  # fmt: skip


def _pooled_containers(user: pwd.struct_passwd) -> set[str]:
    """Every pooled container in the user's engine, running or not, as ``podman ps -a``
    shows them to that user."""
    listed = subprocess.run(
        _as_user(user, "podman", "ps", "-a", "--format", "{{.ID}}",
                 "--filter", f"label={ROLE}={POOL_ROLE}"),
        capture_output=True, text=True, timeout=60, cwd="/", check=True,
    )  # fmt: skip
    return set(listed.stdout.split())


def test_a_pooled_kernel_on_rootless_podman_equals_a_cold_one(
    podman_runtime: Any, workspace: tuple[pwd.struct_passwd, Path, Path]
) -> None:
    user, work, jupyter_path = workspace
    before = _pooled_containers(user)
    done = subprocess.run(
        _as_user(user, sys.executable, str(PROBE), str(work), JUPYTER_PATH=str(jupyter_path),
                 NBCONTAINERS_CONFIG_DIR=str(work / "config")),
        capture_output=True, text=True, timeout=300, cwd=str(work), check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    notebook = work / "project" / "nb"
    assert seen["engine"] == "podman"
    # The first start is cold; the pool fills behind it, its member's kernel started early.
    assert seen["cold_pooled"] is False and seen["filled"] is True
    assert seen["bound_early"] == ["k-1", "k-2", "k-3", "k-4", "k-5"]
    assert len(seen["pooled_running"]) == 1
    # The second start takes that member, and the pool refills.
    assert seen["warm_pooled"] is True and seen["taken"] is True and seen["refilled"] is True
    a, b = seen["cold"], seen["warm"]
    assert b["cwd"] == a["cwd"] == str(notebook)
    assert a["env"].pop("JPY_SESSION_NAME") == "project/nb/a.ipynb"
    assert b["env"].pop("JPY_SESSION_NAME") == "project/nb/b.ipynb"
    assert b["env"] == a["env"] and b["env"]["container"] == "podman"
    # Root in the user's namespace, in both: that is the user on the host.
    assert b["ids"] == a["ids"] == [0, 0, [0]]
    written = notebook / "from-pooled.txt"
    assert written.read_text() == "hi"
    assert (written.stat().st_uid, written.stat().st_gid) == (user.pw_uid, user.pw_gid)
    assert b["files"] == a["files"] == ["data.csv"]
    assert b["path"] == a["path"]
    assert b["argv"] == a["argv"]
    assert b["mounts"] == a["mounts"]
    assert [str(work), "rw"] in b["mounts"]
    assert b["security"] == a["security"]
    assert b["security"]["NoNewPrivs"] == "1" and b["security"]["CapEff"] == "0" * 16
    # What IPython noted of its start: the folder, the session, the startup file's run.
    assert a["ipython"].pop("session") == "project/nb/a.ipynb"
    assert b["ipython"].pop("session") == "project/nb/b.ipynb"
    assert a["ipython"].pop("startup") == [str(notebook), "project/nb/a.ipynb"]
    assert b["ipython"].pop("startup") == [str(notebook), "project/nb/b.ipynb"]
    assert b["ipython"] == a["ipython"]
    assert b["ipython"]["dh"] == [str(notebook)] and b["ipython"]["extensions"]
    # The engine made both containers alike: user, image, network, mounts, limits, security.
    assert seen["warm_made"]["mounts"] == seen["cold_made"]["mounts"]
    assert seen["warm_made"] == seen["cold_made"]
    assert "no-new-privileges" in seen["warm_made"]["host"]["SecurityOpt"]
    # A restart takes a fresh member: a new container, the old one gone, the same folder.
    assert seen["restart_pooled"] is True
    first, second = seen["restart_container"]
    assert first != second and seen["first_after_restart"] is False
    assert seen["restart_cwd"] == str(notebook)
    # At the end one refilled member was idle; the pool's exit hook removed it and its folder.
    assert seen["refilled_again"] is True and len(seen["pooled_at_exit"]) == 1
    assert _pooled_containers(user) - before == set()
    assert len(seen["privates"]) == 3
    assert [p for p in seen["privates"] if Path(p).exists()] == []
