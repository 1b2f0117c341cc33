"""The warm pool on a user's own rootless Podman, for real: the test user's Jupyter side runs
as that user (podman_pool_probe.py), and root checks what it saw and what it left. A pooled
kernel there equals a cold one (cwd, env, ids, files, import path, argv, mounts, privileges,
IPython's notes of its start, how the engine made the container), its member bound its
sockets before the take, a restart takes a fresh member, and exit leaves no pooled
container."""

from __future__ import annotations

import json
import pwd
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from nbcontainers.kernels.pooled import POOL_ROLE
from nbcontainers.labels import ROLE

from .podman_user import as_user
from .pool_alike import assert_alike

pytestmark = pytest.mark.docker
PROBE = Path(__file__).with_name("podman_pool_probe.py")


def _pooled_containers(user: pwd.struct_passwd) -> set[str]:
    """Every pooled container in the user's engine, running or not, as ``podman ps -a``
    shows them to that user."""
    listed = subprocess.run(
        as_user(user, "podman", "ps", "-a", "--format", "{{.ID}}",
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
        as_user(user, sys.executable, str(PROBE), str(work), JUPYTER_PATH=str(jupyter_path),
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
    assert_alike(a, b, notebook, work, ("project/nb/a.ipynb", "project/nb/b.ipynb"))
    assert b["env"]["container"] == "podman"
    # Root in the user's namespace, in both: that is the user on the host.
    assert b["ids"] == [0, 0, [0]]
    written = notebook / "from-pooled.txt"
    assert written.read_text() == "hi"
    assert (written.stat().st_uid, written.stat().st_gid) == (user.pw_uid, user.pw_gid)
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
