"""user ↔ user: a user's runtime folder (engine socket, kernel-start lock) cannot be planted or
opened by another user. On main it fell back to ``/tmp/nbc-podman-UID``, which anyone could
create first: that user then got no kernel at all (seen: EngineUnavailable "... belongs to
another user")."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest

from nbcontainers import rundir
from nbcontainers.errors import ConfigError

OTHER_UID = 65534  # nobody


def _folder(tmp_path: Path, name: str, mode: int = 0o700, uid: int | None = None) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    folder.chmod(mode)
    if uid is not None:
        os.chown(folder, uid, -1)
    return folder


def test_xdg_folder_of_another_user_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(_folder(tmp_path, "x", uid=OTHER_UID)))
    with pytest.raises(ConfigError, match=f"belongs to uid {OTHER_UID}"):
        rundir.user_runtime_dir()


@pytest.mark.parametrize("mode", [0o755, 0o770, 0o701, 0o1777])
def test_folder_open_to_others_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(_folder(tmp_path, "x", mode)))
    with pytest.raises(ConfigError, match="chmod 700"):
        rundir.user_runtime_dir()


def test_link_is_never_followed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    target = _folder(tmp_path, "real")
    (tmp_path / "link").symlink_to(target)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "link"))
    with pytest.raises(ConfigError, match="not a folder"):
        rundir.user_runtime_dir()


def test_a_missing_xdg_folder_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "gone"))
    with pytest.raises(ConfigError, match=r"cannot be used .*XDG_RUNTIME_DIR"):
        rundir.user_runtime_dir()


def test_private_xdg_folder_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    folder = _folder(tmp_path, "x")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(folder))
    assert rundir.user_runtime_dir() == folder


def _no_login_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr(os, "getuid", lambda: 4242424)  # no /run/user/4242424
    monkeypatch.setattr(rundir, "HUB_RUN_ROOT", tmp_path / "run-nbc")


def test_hub_folder_under_a_parent_others_can_write_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    _no_login_folder(monkeypatch, tmp_path)
    parent = _folder(tmp_path, "run-nbc", 0o777)
    (parent / "4242424").mkdir()
    with pytest.raises(ConfigError, match="hub setup"):
        rundir.user_runtime_dir()


def test_home_fallback_is_made_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    _no_login_folder(monkeypatch, tmp_path)
    monkeypatch.setattr(rundir, "check_private", lambda folder, uid, how: folder)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    folder = rundir.user_runtime_dir()
    assert folder == tmp_path / "home/.cache/nbcontainers/run"
    assert folder.stat().st_mode & 0o777 == 0o700


HUB_USER = os.environ.get("NBC_HUB_USERS", "nbc-hub-a nbc-hub-b").split()[-1]


@pytest.mark.docker  # needs a hub test user (scripts/ensure-hub.sh), logged in as a hub does
def test_another_user_cannot_plant_the_folder_of_a_real_user():
    """As root plays 'another user': every predictable temp path the engine socket or the lock
    ever used is created first, owned by nobody; the real user, with no login session (as
    under the example hub's LocalProcessSpawner), still gets a private folder."""
    try:
        user = pwd.getpwnam(HUB_USER)
    except KeyError:
        pytest.fail(f"the hub test user {HUB_USER} is missing: run `make hub`")
    planted = [Path(f"/tmp/nbc-podman-{user.pw_uid}"), Path(f"/tmp/nbc-locks-{user.pw_uid}")]
    made = []
    for path in planted:
        if not path.exists():
            path.mkdir(mode=0o700)
            os.chown(path, OTHER_UID, OTHER_UID)
            made.append(path)
    code = (
        "from nbcontainers.runtimes.podman.runtime import runtime_dir as d; "
        "from nbcontainers.kernels.policy import KernelCountLock as L; "
        "print(d()); print(L.user_folder())"
    )
    try:
        out = subprocess.run(
            [
                "runuser",
                "-u",
                user.pw_name,
                "--",
                "env",
                "-i",
                f"HOME={user.pw_dir}",
                "PATH=/usr/bin:/bin",
                sys.executable,
                "-c",
                code,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            cwd="/",
        )
    finally:
        for path in made:
            path.rmdir()
    assert out.returncode == 0, out.stderr
    folders = {Path(line) for line in out.stdout.split()}
    assert len(folders) == 1 and not folders & set(planted), out.stdout
    folder = folders.pop()
    info = folder.stat()
    assert info.st_uid == user.pw_uid and info.st_mode & 0o077 == 0
