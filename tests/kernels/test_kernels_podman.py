"""Container kernels on a user's own rootless Podman, for real: the test user's Jupyter side
runs as that user (runtime "auto" picks their engine), and root checks what it left on the
host and in the engine. Also the magics there: push/pull, ``%container snapshot --build``
(built and verified by ``podman build``) and ``%export-serving`` of a tiny model (built and
smoke-tested on the user's engine)."""

from __future__ import annotations

import contextlib
import json
import pwd
import subprocess
import sys
from pathlib import Path
from typing import Any

import docker.errors
import pytest

from nbcontainers.labels import KERNEL_ID

from .podman_user import as_user

pytestmark = pytest.mark.docker
PROBE = Path(__file__).with_name("podman_probe.py")


def _probe(user: pwd.struct_passwd, work: Path, jupyter_path: Path, *mode: str) -> Any:
    """Run the probe as ``user``, the way that user's Jupyter server would; what it saw."""
    done = subprocess.run(
        as_user(user, sys.executable, str(PROBE), *mode, str(work),
                JUPYTER_PATH=str(jupyter_path), NBCONTAINERS_CONFIG_DIR=str(work / "config")),
        capture_output=True, text=True, timeout=900, cwd=str(work), check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_kernel_on_the_users_rootless_podman(podman_runtime: object, workspace: object) -> None:
    user, work, jupyter_path = workspace  # type: ignore[misc]
    before = {s.id for s in podman_runtime.list({KERNEL_ID: None})}  # type: ignore[attr-defined]
    seen = _probe(user, work, jupyter_path)
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


@pytest.mark.timeout(900)
def test_push_pull_snapshot_and_export_on_rootless_podman(
    podman_runtime: Any, workspace: object
) -> None:
    user, work, jupyter_path = workspace  # type: ignore[misc]
    images_before = set(podman_runtime.api.images(all=True, quiet=True))
    try:
        seen = _probe(user, work, jupyter_path, "magics")
        failed = {k: v for k, v in seen.items() if v["status"] != "ok"}
        assert not failed and "stop" in seen, failed
        assert seen["pulled"]["out"].strip() == "[[2.0, 4.0], [6.0, 8.0]]"  # pushed, doubled there
        assert "0 differences" in seen["snapshot"]["out"], seen["snapshot"]
        assert "Registered as image 'snapshot-env'" in seen["snapshot"]["out"]
        assert "Smoke test passed" in seen["export"]["out"], seen["export"]
        for name in ("snapshot-env", "serving-double"):  # in the user's own engine
            found = [t for i in podman_runtime.api.images() for t in i.get("RepoTags") or ()]
            assert any(f"nbcontainers/{name}:" in t for t in found), (name, found)
        lock = (work / "serving-double" / "requirements.lock").read_text()
        assert "numpy==" in lock
        assert (work / "env" / "requirements.lock").stat().st_uid == user.pw_uid
    finally:
        # Exactly what this test built (tags and podman's intermediate layers), newest first.
        made = set(podman_runtime.api.images(all=True, quiet=True)) - images_before
        created = {i: podman_runtime.api.inspect_image(i)["Created"] for i in made}
        for image in sorted(made, key=created.__getitem__, reverse=True):
            with contextlib.suppress(docker.errors.NotFound):  # gone with its child
                podman_runtime.api.remove_image(image, force=True)
    left = [s for s in podman_runtime.list({KERNEL_ID: None}) if s.running]
    assert left == [], left
