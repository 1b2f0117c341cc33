"""An image saved from the real Docker engine through the seam (what ``hub setup`` loads into
the shared store and into overlay users' own storage): the same tar ``docker save`` writes, a
failure on either side named, and a loader that stops early leaves nothing running."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
import threading
import time
from pathlib import Path
from typing import IO

import pytest

from nbcontainers.runtimes.docker.export import saved_image
from nbcontainers.runtimes.docker.runtime import DockerRuntime
from nbcontainers.runtimes.podman.store import load_saved, source_image_id

pytestmark = [pytest.mark.docker, pytest.mark.timeout(300)]

BASE = "nbcontainers/base:bookworm"


@pytest.fixture
def docker(runtime: DockerRuntime) -> DockerRuntime:
    if runtime.image_info(BASE) is None:
        pytest.skip(f"{BASE} is not built (scripts/ensure-docker.sh)")
    return runtime


def _members(tar: Path) -> dict[str, str]:
    """Name -> sha256 of every file in an image tar (the manifest's order may differ)."""
    found = {}
    with tarfile.open(tar) as archive:
        for member in archive.getmembers():
            if member.isfile():
                data = archive.extractfile(member)
                assert data is not None
                found[member.name] = hashlib.sha256(data.read()).hexdigest()
    return found


def test_the_stream_is_what_docker_save_writes(docker: DockerRuntime, tmp_path: Path) -> None:
    if shutil.which("docker") is None:
        pytest.skip("no docker command to compare with")
    ours, theirs = tmp_path / "ours.tar", tmp_path / "theirs.tar"
    with saved_image(docker, BASE) as saved, ours.open("wb") as out:
        shutil.copyfileobj(saved.stream, out)
    assert saved.error == ""
    subprocess.run(["docker", "save", "-o", str(theirs), BASE], check=True, timeout=300)
    assert _members(ours) == _members(theirs)
    info = docker.image_info(BASE)
    assert info is not None and source_image_id(docker, BASE) == info.id.removeprefix("sha256:")


def test_a_missing_image_is_named_with_both_sides(docker: DockerRuntime) -> None:
    def load(stream: IO[bytes]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["cat"], stdin=stream, capture_output=True, text=True, check=False)

    with pytest.raises(RuntimeError) as caught:
        load_saved(load, docker, "nbcontainers/no-such-image:x", "the test store")
    said = str(caught.value)
    assert said.startswith("loading nbcontainers/no-such-image:x into the test store failed")
    assert "saving it from the Docker engine failed" in said and "no-such-image" in said
    assert source_image_id(docker, "nbcontainers/no-such-image:x") is None
    assert source_image_id(DockerRuntime("unix:///nonexistent.sock"), BASE) is None  # no engine


def test_a_loader_that_stops_early_leaves_no_feeder_running(docker: DockerRuntime) -> None:
    started = time.monotonic()
    with saved_image(docker, BASE) as saved:
        done = subprocess.run(["head", "-c", "1000"], stdin=saved.stream, capture_output=True)
    assert len(done.stdout) == 1000
    assert saved.error == "the loader stopped reading"
    assert time.monotonic() - started < 60
    assert not [t for t in threading.enumerate() if t.name == f"nbc-save-{BASE}"]


def test_an_engine_without_saved_images_is_refused_by_name() -> None:
    from nbcontainers.errors import Unsupported
    from nbcontainers.runtimes.fake import FakeRuntime

    with pytest.raises(Unsupported, match="the FakeRuntime runtime saves none"):
        load_saved(
            lambda stream: subprocess.CompletedProcess([], 0, "", ""), FakeRuntime(), "x", "y"
        )


def test_a_users_own_storage_gets_the_image_with_the_id_setup_compares(
    docker: DockerRuntime, tmp_path: Path
) -> None:
    """What ``hub setup`` does for a user on another driver than the store's: ``load_for_user``
    through a runner shaped like ``AsUser.run`` (here root on a throw-away store), after which
    the user's engine reports the id the system engine has, so a rerun loads nothing."""
    from nbcontainers.runtimes.podman.userengine import load_for_user, user_image_id

    if os.geteuid() != 0 or shutil.which("podman") is None:
        pytest.skip("needs root and podman")
    short = Path(tempfile.mkdtemp(prefix="nbc-run."))  # podman wants a runroot under 50 chars
    where = ["--root", str(tmp_path / "root"), "--runroot", str(short)]

    def run(
        *command: str,
        timeout: float = 600,
        stdin: int | IO[bytes] | None = None,
        check: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        argv = [command[0], *where, "--storage-driver", "vfs", *command[1:]]
        return subprocess.run(argv, stdin=stdin, capture_output=True, text=True,
                              timeout=timeout, check=check, cwd="/")  # fmt: skip

    try:
        assert user_image_id(run, BASE) is None
        load_for_user(run, docker, BASE)
        assert user_image_id(run, BASE) == source_image_id(docker, BASE)
    finally:
        run("podman", "system", "reset", "--force")
        shutil.rmtree(tmp_path / "root", ignore_errors=True)
        shutil.rmtree(short, ignore_errors=True)
