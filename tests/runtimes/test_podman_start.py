"""Starting a user's rootless Podman on demand: what is missing is named with its fix, within
seconds, never a hang. (The real start, as a real user, is in the contract suite's fixture.)"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from nbcontainers.errors import EngineUnavailable
from nbcontainers.runtimes import podman


def test_missing_podman_names_the_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(podman.shutil, "which", lambda name: None)
    with pytest.raises(EngineUnavailable, match=r"apt-get install podman uidmap slirp4netns"):
        podman.ensure_service(Path("/nonexistent/podman.sock"))


def test_a_user_without_a_subuid_range_gets_the_usermod_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(podman.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(podman.os, "getuid", lambda: 4242)
    monkeypatch.setattr(podman.getpass, "getuser", lambda: "ada")
    (tmp_path / "subuid").write_text("bob:100000:65536\n")
    (tmp_path / "subgid").write_text("bob:100000:65536\ncarol:165536:65536\n")
    monkeypatch.setattr(podman, "SUBID_FILES", (tmp_path / "subuid", tmp_path / "subgid"))
    # A free range: above bob's and carol's, so the line runs as printed.
    line = r"sudo usermod --add-subuids 231072-296607 --add-subgids 231072-296607 ada"
    with pytest.raises(EngineUnavailable, match=line + r".*hub setup --fix"):
        podman.ensure_service(Path("/nonexistent/podman.sock"))


def test_an_engine_that_dies_at_start_is_reported_with_its_log(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    broken = tmp_path / "podman"
    broken.write_text("#!/bin/sh\necho 'Error: cannot set up namespace: boom' >&2\nexit 125\n")
    broken.chmod(0o755)
    monkeypatch.setattr(
        podman.shutil, "which", lambda name: str(broken) if name == "podman" else "/bin/true"
    )
    monkeypatch.setattr(podman, "_has_subuid_range", lambda user, uid: True)
    sock = tmp_path / "run" / "podman" / "podman.sock"
    started = time.monotonic()
    with pytest.raises(EngineUnavailable, match=r"did not start(.|\n)*cannot set up namespace"):
        podman.ensure_service(sock, wait=10)
    assert time.monotonic() - started < 5  # it died: no waiting out the whole timeout
    assert sock.parent.stat().st_mode & 0o777 == 0o700


def test_runtime_dir_falls_back_to_a_private_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/nonexistent")
    uid = os.getuid()
    folder = podman.runtime_dir()
    if folder == Path(f"/run/user/{uid}"):
        return  # login made one: that is the right answer
    assert folder == Path(f"/tmp/nbc-podman-{uid}")
    assert folder.stat().st_mode & 0o777 == 0o700 and folder.stat().st_uid == uid


def test_a_planted_runtime_folder_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/nonexistent")
    monkeypatch.setattr(podman.os, "getuid", lambda: 987654)
    planted = Path("/tmp/nbc-podman-987654")
    planted.mkdir(mode=0o700, exist_ok=True)  # made by this (root) test: someone else's
    try:
        with pytest.raises(EngineUnavailable, match="belongs to another user"):
            podman.runtime_dir()
    finally:
        planted.rmdir()


def test_the_engine_does_not_keep_the_callers_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Started in a notebook's folder that is deleted later, conmon fails every container start.
    seen = tmp_path / "cwd"
    fake = tmp_path / "podman"
    fake.write_text(f"#!/bin/sh\npwd > {seen}\nexit 125\n")
    fake.chmod(0o755)
    monkeypatch.setattr(
        podman.shutil, "which", lambda name: str(fake) if name == "podman" else "/bin/true"
    )
    monkeypatch.setattr(podman, "_has_subuid_range", lambda user, uid: True)
    caller = tmp_path / "notebooks"
    caller.mkdir()
    monkeypatch.chdir(caller)
    with pytest.raises(EngineUnavailable):
        podman.ensure_service(tmp_path / "run" / "podman" / "podman.sock", wait=10)
    assert seen.read_text().strip() == "/"
