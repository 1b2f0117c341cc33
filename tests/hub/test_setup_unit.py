"""hub setup without root or engines: storage.conf edits keep what is there, sub-uid ranges
never overlap, what a user reads when an image is missing from the shared store."""

from __future__ import annotations

import os
import pwd
import stat
import sys
from pathlib import Path

import pytest

from nbcontainers.hub import setup as hub_setup
from nbcontainers.hub.seal import seal_store, unreachable_parents
from nbcontainers.hub.subids import check_users, read_ranges, usermod_command
from nbcontainers.runtimes.podman.storageconf import (
    HUB_MARK,
    add_store,
    configured_stores,
    drop_store,
    missing_image_message,
)

needs_toml = pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib is 3.11+")


@needs_toml
def test_a_new_system_file_gets_the_store_driver_and_roots_defaults(tmp_path: Path) -> None:
    text = add_store("", "/var/lib/nbcontainers/storage", "vfs")
    conf = tmp_path / "storage.conf"
    conf.write_text(text)
    assert configured_stores(conf) == ["/var/lib/nbcontainers/storage"]
    assert 'driver = "vfs"' in text and 'runroot = "/run/containers/storage"' in text
    assert add_store(text, "/var/lib/nbcontainers/storage", "vfs") == text  # idempotent


@needs_toml
def test_an_existing_file_keeps_its_lines_stores_and_driver(tmp_path: Path) -> None:
    old = (
        '# site settings\n[storage]\ndriver = "overlay"\n\n[storage.options]\n'
        'additionalimagestores = [\n  "/srv/images",\n]\nsize = ""\n'
        '[storage.options.overlay]\nmountopt = "nodev"\n'
    )
    new = add_store(old, "/var/lib/nbcontainers/storage", "vfs")
    conf = tmp_path / "storage.conf"
    conf.write_text(new)
    assert configured_stores(conf) == ["/srv/images", "/var/lib/nbcontainers/storage"]
    assert "# site settings" in new and 'mountopt = "nodev"' in new and 'size = ""' in new
    assert 'driver = "overlay"' in new and 'driver = "vfs"' not in new  # users' storage stays


@needs_toml
def test_a_users_file_gets_no_graphroot(tmp_path: Path) -> None:
    text = add_store("", "/s", "vfs", system=False)
    assert "graphroot" not in text and "runroot" not in text and 'driver = "vfs"' in text


def test_missing_ranges_get_free_non_overlapping_ones(tmp_path: Path) -> None:
    (tmp_path / "subuid").write_text("alice:100000:65536\nbob:165536:65536\n")
    (tmp_path / "subgid").write_text("alice:100000:65536\n")
    users = [
        pwd.struct_passwd((name, "x", uid, uid, "", f"/home/{name}", "/bin/sh"))
        for name, uid in (("alice", 2001), ("bob", 2002), ("carol", 2003))
    ]
    checks = {c.name: c for c in check_users(users, tmp_path / "subuid", tmp_path / "subgid")}
    assert checks["alice"].ok and checks["alice"].fix == ()
    # bob lacks only sub-gids: only that half is added, above every range in either file.
    assert checks["bob"].fix == ("usermod", "--add-subgids", "231072-296607", "bob")
    assert checks["carol"].fix == usermod_command("carol", 296608)
    assert read_ranges(tmp_path / "missing") == []


def test_a_missing_shared_image_says_ask_your_admin(tmp_path: Path) -> None:
    conf = tmp_path / "storage.conf"
    assert missing_image_message("nbcontainers/python:x", "nbc-python", conf) is None
    conf.write_text(add_store("", "/var/lib/nbcontainers/storage", "vfs", system=False))
    msg = missing_image_message("nbcontainers/python:x", "nbc-python", conf)
    if sys.version_info >= (3, 11):
        assert msg is not None
        assert "ask your admin to run `nbcontainers hub setup`" in msg.lower()
        assert "/var/lib/nbcontainers/storage" in msg


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to a group needs root")
def test_the_store_opens_to_the_group_only_and_loses_setuid_bits(tmp_path: Path) -> None:
    store = tmp_path / "store"
    layer = store / "vfs" / "dir" / "abc"
    layer.mkdir(parents=True, mode=0o700)
    store.chmod(0o700)
    (layer / "shadow").write_text("secret")
    (layer / "shadow").chmod(0o600)
    (layer / "su").write_text("#!/bin/sh")
    (layer / "su").chmod(0o4755)
    (layer / "wall").write_text("#!/bin/sh")
    (layer / "wall").chmod(0o2755)
    (store / "libpod").mkdir(mode=0o700)
    done = seal_store(store, 4242)
    info = store.stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (0, 4242, 0o750)
    assert stat.S_IMODE((layer / "shadow").stat().st_mode) == 0o644  # behind the 0750 gate
    assert stat.S_IMODE((layer / "su").stat().st_mode) == 0o755
    assert stat.S_IMODE((layer / "wall").stat().st_mode) == 0o755
    assert sorted(Path(p).name for p in done.setid_removed) == ["su", "wall"]
    assert stat.S_IMODE((store / "libpod").stat().st_mode) == 0o700
    again = seal_store(store, 4242)
    assert (again.modes, again.setid_removed) == (0, [])  # idempotent


def test_a_parent_users_cannot_pass_is_reported_not_widened(tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    private.chmod(0o700)
    blocked = unreachable_parents(private / "store", 4242)
    assert any(b.startswith(f"{private} (0700)") for b in blocked)
    assert stat.S_IMODE(private.stat().st_mode) == 0o700


def test_setup_needs_root_and_names_the_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    lines: list[str] = []
    monkeypatch.setattr(hub_setup.os, "geteuid", lambda: 1000)
    assert hub_setup.run_setup(echo=lines.append).exit_code == 1
    assert "must run as root" in lines[0]
    monkeypatch.setattr(hub_setup.os, "geteuid", lambda: 0)
    monkeypatch.setattr(hub_setup.shutil, "which", lambda name: None)
    lines.clear()
    result = hub_setup.run_setup(echo=lines.append)
    assert result.problems == [hub_setup.APT]
    assert "apt-get install podman uidmap" in lines[0]


@needs_toml
def test_an_overlay_user_drops_the_vfs_store_and_keeps_other_lines(tmp_path: Path) -> None:
    skel = add_store("# mine\n", "/var/lib/nbcontainers/storage", "vfs", system=False)
    new = drop_store(skel, "/var/lib/nbcontainers/storage", "overlay")
    conf = tmp_path / "storage.conf"
    conf.write_text(new)
    assert new.startswith(HUB_MARK) and "# mine" in new and 'driver = "overlay"' in new
    assert configured_stores(conf) == [] and "vfs" not in new
    assert drop_store(new, "/var/lib/nbcontainers/storage", "overlay") == new  # idempotent
    assert drop_store("", "/s", "overlay") == f'{HUB_MARK}\n[storage]\ndriver = "overlay"\n'
    # Such a user has no shared store, and is still told who loads the images.
    msg = missing_image_message("nbcontainers/python:x", "nbc-python", conf)
    assert msg is not None and "Ask your admin to run `nbcontainers hub setup`" in msg
    other = drop_store('[storage.options]\nadditionalimagestores = ["/a", "/s"]\n', "/s", "vfs")
    conf.write_text(other)
    assert configured_stores(conf) == ["/a"]


@needs_toml
def test_doctor_is_given_the_stores_the_system_conf_names_and_the_default_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nbcontainers.hub import store as hub_store

    conf, default = tmp_path / "storage.conf", tmp_path / "default"
    conf.write_text(add_store("", "/srv/images", "vfs"))
    monkeypatch.setattr(hub_store, "STORAGE_CONF", conf)
    monkeypatch.setattr(hub_store, "DEFAULT_STORE", default)
    assert hub_store.shared_stores_here() == [Path("/srv/images")]
    default.mkdir()  # made by setup, named in no file (yet): checked all the same
    assert hub_store.shared_stores_here() == [Path("/srv/images"), default]


def test_each_users_access_to_the_gpu_nodes_is_reported_with_the_grant(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rootless engine opens /dev/nvidia* as its user: setup says, per user, whether that
    works, and the usermod line where it doesn't (a report: some users may be meant to have
    no GPU)."""
    import grp
    import json

    from nbcontainers.hub.setup import gpu_access

    for name, mode in (("nvidia0", 0o660), ("nvidiactl", 0o666)):
        (tmp_path / name).touch()
        (tmp_path / name).chmod(mode)
    node = lambda n: {"path": f"/dev/{n}", "hostPath": str(tmp_path / n)}  # noqa: E731
    (tmp_path / "cdi").mkdir()
    (tmp_path / "cdi" / "nvidia.json").write_text(
        json.dumps(
            {
                "kind": "nvidia.com/gpu",
                "devices": [{"name": "0", "containerEdits": {"deviceNodes": [node("nvidia0")]}}],
                "containerEdits": {"deviceNodes": [node("nvidiactl")]},
            }
        )
    )
    monkeypatch.setenv("NBCONTAINERS_CDI_DIRS", str(tmp_path / "cdi"))
    said: list[str] = []
    gpu_access(["root", "nobody"], said.append)
    group = grp.getgrgid((tmp_path / "nvidia0").stat().st_gid).gr_name
    assert said == [
        "GPU devices (GPUs 0; what each user's engine can open):",
        "  root: can open every GPU device node",
        f"  nobody: can't open {tmp_path}/nvidia0; GPU kernels will be refused. If nobody "
        f"should use GPUs: sudo usermod -aG {group} nobody",
    ]
    monkeypatch.setenv("NBCONTAINERS_CDI_DIRS", str(tmp_path / "none"))
    said.clear()
    gpu_access(["nobody"], said.append)  # no GPU on the host (and no /dev/nvidia0 here)
    assert said == []
