"""A kernel's identity and lasting home (kernels/home.py) decided and made on the host, with no
engine: where ``~`` is for each kind of server, the passwd/group text, the user site folders,
ownership, and a root server that never follows a link its kernel's user planted."""

from __future__ import annotations

import os
import pwd
import stat
import threading
from pathlib import Path

import pytest

from nbcontainers.errors import ConfigError
from nbcontainers.kernels.home import KernelHome, data_dir, kernel_name, plan_home
from nbcontainers.runtimes.base import Mount

from .test_plan_unit import _no_host_accounts  # noqa: F401 (an autouse fixture)

UID = 48213


def _home(
    tmp_path: Path,
    uid: int = 1000,
    server_uid: int = 1000,
    mounts: tuple[Mount, ...] = (),
    rootless: bool = False,
    python: str = "3.11",
    **env: str,
) -> KernelHome | None:
    server_env = {"HOME": str(tmp_path / "host-home"), **env}
    return plan_home(uid, uid, server_uid, server_env, "ada", "python", python, mounts, rootless)


def test_the_users_home_where_a_workspace_mount_holds_it(tmp_path: Path) -> None:
    host_home = tmp_path / "host-home"
    host_home.mkdir()
    home = _home(tmp_path, mounts=(Mount(str(tmp_path), str(tmp_path), read_only=False),))
    assert home is not None and not home.mounted
    assert home.path == home.host_path == str(host_home)
    assert home.env() == {
        "HOME": str(host_home),
        "USER": "ada",
        "LOGNAME": "ada",
        "PYTHONUSERBASE": f"{host_home}/.local/share/nbcontainers/python/python",
    }
    assert [m.target for m in home.mounts()] == ["/etc/passwd", "/etc/group"]
    home.prepare()
    site = host_home / ".local/share/nbcontainers/python/python/lib/python3.11/site-packages"
    assert site.is_dir()  # before the interpreter starts, so site puts it on sys.path
    identity = Path(home.identity_dir)
    assert identity.parent == host_home / ".local/share/nbcontainers/identity"
    passwd = (identity / "passwd").read_text().splitlines()
    assert passwd[-1] == f"ada:x:1000:1000:ada:{host_home}:/bin/sh"
    assert passwd[0].startswith("root:x:0:0:")
    assert (identity / "group").read_text().splitlines()[-1] == "ada:x:1000:"


def test_a_read_only_mount_or_one_beside_the_home_does_not_hold_it(tmp_path: Path) -> None:
    ro = Mount(str(tmp_path), str(tmp_path), read_only=True)
    beside = Mount(str(tmp_path / "host"), str(tmp_path / "host"), read_only=False)
    for mount in (ro, beside):
        home = _home(tmp_path, mounts=(mount,))
        assert home is not None and home.mounted


def test_else_a_folder_of_the_data_dir_at_the_homes_path(tmp_path: Path) -> None:
    home = _home(tmp_path, XDG_DATA_HOME=str(tmp_path / "data"))
    assert home is not None and home.mounted
    assert home.path == str(tmp_path / "host-home")  # `~/x` means the same path inside
    assert home.host_path == str(tmp_path / "data/nbcontainers/home")
    assert Mount(home.host_path, home.path, read_only=False) in home.mounts()
    home.prepare()
    assert stat.S_IMODE(os.stat(home.host_path).st_mode) == 0o700
    assert Path(home.host_path, ".local/share/nbcontainers/python/python/lib/python3.11").is_dir()
    home.prepare()  # idempotent: every start calls it


def test_no_lasting_home_without_a_data_dir(tmp_path: Path) -> None:
    assert plan_home(1000, 1000, 1000, {}, "ada", "python", "3.11", (), False) is None
    assert data_dir({"HOME": "/"}, 1000) == data_dir({"HOME": "relative"}, 1000) == ""
    assert data_dir({"HOME": "/h", "XDG_DATA_HOME": "/x"}, 1000) == "/x/nbcontainers"


def test_a_root_server_keeps_another_uids_home_in_its_own_data_dir(tmp_path: Path) -> None:
    home = _home(tmp_path, uid=UID, server_uid=0, XDG_DATA_HOME=str(tmp_path / "data"))
    assert home is not None and home.mounted
    assert home.name == f"u{UID}"  # no passwd entry on the host, no hub name: u<uid>
    assert home.path == f"/home/u{UID}" and home.env()["USER"] == f"u{UID}"
    assert home.host_path == str(tmp_path / f"data/nbcontainers/homes/{UID}")
    assert home.owner == (UID, UID)
    assert f"u{UID}:x:{UID}:{UID}:u{UID}:/home/u{UID}:/bin/sh" in home.passwd
    if os.geteuid() == 0:
        home.prepare()
        made = Path(home.host_path)
        assert (made.stat().st_uid, stat.S_IMODE(made.stat().st_mode)) == (UID, 0o700)
        site = made / ".local/share/nbcontainers/python/python/lib/python3.11/site-packages"
        assert site.stat().st_uid == UID
        assert (Path(home.identity_dir) / "passwd").stat().st_uid == 0  # not the user's


@pytest.mark.skipif(os.geteuid() != 0, reason="a root server's folders")
def test_a_root_server_follows_no_link_the_kernels_user_planted(tmp_path: Path) -> None:
    """The kernel's user owns its home folder and can put a link in it pointing anywhere on
    the host; the root server that makes the user site folders must not make (and hand to
    the user) folders where it points. (A plain os.makedirs + chown would: shown before the
    no-follow walk was written.)"""
    home = _home(tmp_path, uid=UID, server_uid=0, XDG_DATA_HOME=str(tmp_path / "data"))
    assert home is not None
    home.prepare()
    target = tmp_path / "root-only"
    target.mkdir(mode=0o700)
    planted = Path(home.host_path, ".local")
    os.rename(planted, tmp_path / "moved-away")
    planted.symlink_to(target)
    with pytest.raises(ConfigError, match="Cannot make the kernel's home folder"):
        home.prepare()
    assert list(target.iterdir()) == []  # nothing made, nothing handed over


def test_rootless_kernels_are_root_inside_with_the_users_name(tmp_path: Path) -> None:
    home = _home(tmp_path, uid=0, server_uid=1000, rootless=True)
    assert home is not None and home.uid == 0
    assert not home.passwd and [m.target for m in home.mounts()] == [home.path]  # root exists
    assert home.env()["USER"] == "ada"


def test_an_image_of_unknown_python_gets_each_minor_versions_site(tmp_path: Path) -> None:
    home = _home(tmp_path, python="3")
    assert home is not None
    sites = home.site_packages()
    assert f"{home.userbase}/lib/python3.11/site-packages" in sites and len(sites) > 3


def test_names_come_from_passwd_then_the_hub_then_the_uid() -> None:
    assert kernel_name(7, None, {"JUPYTERHUB_USER": "grace"}, "7") == "grace"
    assert kernel_name(7, None, {"JUPYTERHUB_USER": "x:0:0:"}, "ada") == "ada"  # no injection
    assert kernel_name(7, None, {}, "7") == "u7"  # a number is no name
    assert kernel_name(7, None, {"JUPYTERHUB_USER": "a\nroot::0:0"}, "") == "u7"


def test_the_servers_home_variable_wins_for_its_own_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the host's ``expanduser("~")``: $HOME first (a spawner may set it), the passwd entry
    after; for another uid only that uid's passwd entry counts."""
    entry = pwd.struct_passwd(("grace", "x", 1000, 1000, "", "/home/grace", "/bin/sh"))
    monkeypatch.setattr("nbcontainers.kernels.home._passwd", lambda uid: entry)
    own = _home(tmp_path)
    assert own is not None and own.path == str(tmp_path / "host-home") and own.name == "grace"
    other = _home(tmp_path, server_uid=0, XDG_DATA_HOME=str(tmp_path / "data"))
    assert other is not None and other.path == "/home/grace"


def test_a_home_that_is_a_system_folder_is_mounted_at_home_name(tmp_path: Path) -> None:
    home = plan_home(1000, 1000, 1000, {"HOME": "/tmp"}, "ada", "python", "3.11", (), False)
    assert home is not None and home.path == "/home/ada"  # the image's /tmp stays its own
    assert home.host_path == "/tmp/.local/share/nbcontainers/home"  # still the user's data dir


def test_pips_scripts_folder_is_first_on_path_for_every_interpreter(tmp_path: Path) -> None:
    """`%pip install` puts a package's commands in $PYTHONUSERBASE/bin, which no image has on
    PATH: the .pth line in the user site puts it first, once, for a real interpreter started
    as the kernel is (PYTHONUSERBASE set), and does nothing without PYTHONUSERBASE."""
    import subprocess
    import sys

    from nbcontainers.kernels.home import SCRIPTS_PTH

    home = _home(tmp_path, XDG_DATA_HOME=str(tmp_path / "data"), python="3")
    assert home is not None
    home.prepare()
    userbase = Path(home.host_path, home.userbase[len(home.path) :].lstrip("/"))
    for site in home.site_packages():
        assert Path(home.host_path, site[len(home.path) :].lstrip("/"), SCRIPTS_PTH).is_file()
    show = "import os; print(os.environ['PATH'])"
    bin_dir = str(userbase / "bin")
    # The system's interpreter (a venv's has no user site), as the image's runs.
    python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
    for path, expect in (
        ("/usr/bin:/bin", [bin_dir, "/usr/bin", "/bin"]),
        (f"/usr/bin:{bin_dir}", [bin_dir, "/usr/bin"]),  # once, first
    ):
        env = {"PYTHONUSERBASE": str(userbase), "PATH": path}
        out = subprocess.run(
            [python, "-c", show], env=env, capture_output=True, text=True, check=True
        ).stdout.strip()
        assert out.split(":") == expect
    # The line itself, as site runs it, without PYTHONUSERBASE: PATH untouched.
    site_dir = Path(home.host_path, home.site_packages()[0][len(home.path) :].lstrip("/"))
    line = (site_dir / SCRIPTS_PTH).read_text()
    environ = {"PATH": "/usr/bin"}
    import os as real_os

    saved = dict(real_os.environ)
    try:
        real_os.environ.clear()
        real_os.environ.update(environ)
        exec(line)
        assert real_os.environ["PATH"] == "/usr/bin"
    finally:
        real_os.environ.clear()
        real_os.environ.update(saved)


@pytest.mark.skipif(os.geteuid() != 0, reason="a root server's folders")
def test_a_link_planted_at_the_scripts_pth_is_replaced_not_followed(tmp_path: Path) -> None:
    """The user site is the kernel's user's: a link there named like the .pth must not make
    the root server write (or hand over) the file it points to."""
    from nbcontainers.kernels.home import SCRIPTS_PTH

    home = _home(tmp_path, uid=UID, server_uid=0, XDG_DATA_HOME=str(tmp_path / "data"))
    assert home is not None
    home.prepare()
    site = Path(home.host_path, home.site_packages()[0][len(home.path) :].lstrip("/"))
    target = tmp_path / "roots-file"
    target.write_text("root's\n")
    (site / SCRIPTS_PTH).unlink()
    (site / SCRIPTS_PTH).symlink_to(target)
    home.prepare()
    assert target.read_text() == "root's\n" and target.stat().st_uid == 0
    made = site / SCRIPTS_PTH
    assert not made.is_symlink() and made.stat().st_uid == UID
    assert made.read_text().startswith("import os;")
    assert not list(site.glob(f".{SCRIPTS_PTH}.*"))  # its temporary name (random) is gone


@pytest.mark.parametrize("planted", ["fifo", "folder"])
def test_a_fifo_or_folder_planted_at_the_scripts_pth_never_hangs_the_start(
    tmp_path: Path, planted: str
) -> None:
    """Reading a FIFO waits for a writer that never comes: the start (a thread of the server)
    would hang. A FIFO is replaced; a folder is left (the user's own doing) and the start
    goes on without the line."""
    from nbcontainers.kernels.home import SCRIPTS_PTH

    home = _home(tmp_path, XDG_DATA_HOME=str(tmp_path / "data"))
    assert home is not None
    home.prepare()
    pth = Path(home.host_path, home.site_packages()[0][len(home.path) :].lstrip("/"), SCRIPTS_PTH)
    pth.unlink()
    os.mkfifo(pth) if planted == "fifo" else pth.mkdir()
    done = threading.Thread(target=home.prepare, daemon=True)
    done.start()
    done.join(10)
    assert not done.is_alive(), "prepare() hangs on the planted FIFO"
    if planted == "fifo":
        assert pth.is_file() and pth.read_text().startswith("import os;")
    else:
        assert pth.is_dir() and not [p for p in pth.parent.iterdir() if p.name.startswith(".")]
