"""root ↔ user during ``hub setup``, the parts that need no engine: how a command as a user is
made (no terminal, new session, no user-writable engine config), what a user's process prints
reaching root's terminal, files in a user's home (links and hard links refused, writes that
never go through a link), and the runtime folders (a planted one replaced)."""

from __future__ import annotations

import os
import pty
import pwd
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from nbcontainers.hub import homefiles, probe
from nbcontainers.hub.asuser import AsUser, clean, root_owned
from nbcontainers.hub.rundirs import ensure_run_dirs, tmpfiles_text

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown/setpriv need root")
NOBODY = 65534


def _user(uid: int, home: Path, name: str = "alice") -> pwd.struct_passwd:
    return pwd.struct_passwd((name, "x", uid, uid, "", str(home), "/bin/sh"))


def test_a_users_engine_reads_only_root_owned_config(tmp_path: Path) -> None:
    who = AsUser(_user(4242, Path("/home/alice")), Path("/etc/nbcontainers/hub/vfs"), Path("/r"))
    env = who.env()
    assert who.argv("podman", "info")[:5] == [
        "setpriv", "--reuid=4242", "--regid=4242", "--init-groups", "--",
    ]  # fmt: skip
    assert env["XDG_CONFIG_HOME"] == "/etc/nbcontainers/hub/vfs"  # not ~/.config
    assert env["CONTAINERS_STORAGE_CONF"].startswith("/etc/nbcontainers/hub/vfs/")
    assert not env["CONTAINERS_REGISTRIES_CONF"].startswith("/home/")
    assert "CONTAINERS_CONF" not in env  # the system's own files, never the user's
    assert env["XDG_RUNTIME_DIR"] == "/r" and env["PATH"].split(":")[0] == "/usr/local/bin"


def test_podmans_warnings_do_not_hide_its_error() -> None:
    err = 'level=warning msg="/ is not a shared mount"\nlevel=error msg="no such image"\n'
    assert clean(err) == 'level=error msg="no such image"'


def test_a_users_output_cannot_drive_roots_terminal() -> None:
    hostile = "ok\x1b]0;title\x07\x1b[2J\r\nnext\x9b6n"
    shown = clean(hostile)
    assert "\x1b" not in shown and "\x07" not in shown and "\x9b" not in shown
    assert shown.startswith("ok") and " | next" in shown


@needs_root
def test_a_command_as_the_user_has_no_terminal_and_its_own_session(tmp_path: Path) -> None:
    # Run from a process that has a controlling terminal (root's shell, emulated by a pty).
    code = (
        "import os, pwd, sys\n"
        "from pathlib import Path\n"
        "from nbcontainers.hub.asuser import AsUser\n"
        "who = AsUser(pwd.getpwuid(65534), Path('/'))\n"
        "done = who.run('python3', '-c', 'import os; print(os.getsid(0), os.getuid());"
        ' fd = os.open("/dev/tty", os.O_RDWR)\')\n'
        "print('SETUP', os.getsid(0), 'CHILD', done.stdout.strip(), 'RC', done.returncode,"
        " done.stderr.strip().splitlines()[-1:])\n"
    )
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        os.chdir(Path(__file__).resolve().parents[2])
        os.execv(sys.executable, [sys.executable, "-c", code])
    out = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.waitpid(pid, 0)
    text = out.decode()
    words = text.split()
    setup_sid, child_sid, child_uid = words[1], words[3], words[4]
    assert child_uid == str(NOBODY) and child_sid != setup_sid, text
    assert "No such device or address" in text, text  # no controlling terminal to open


@needs_root
def test_a_link_in_a_home_is_neither_read_nor_written_through(tmp_path: Path) -> None:
    home = tmp_path / "home"
    conf = home / ".config" / "containers"
    conf.mkdir(parents=True)
    secret = tmp_path / "secret"
    secret.write_text("root only\n")
    secret.chmod(0o600)
    (conf / "storage.conf").symlink_to(secret)
    for p in (home, home / ".config", conf):
        os.lchown(p, NOBODY, NOBODY)
    with homefiles.user_dir(str(home), (".config", "containers"), NOBODY, NOBODY) as fd:
        assert fd is not None
        with pytest.raises(homefiles.HomeRefused, match="is a link"):
            homefiles.read_file(fd, "storage.conf", NOBODY, "storage.conf")
        with pytest.raises(homefiles.HomeRefused, match="is a link"):
            homefiles.write_file(fd, "storage.conf", "x", NOBODY, NOBODY, "storage.conf")
    assert secret.read_text() == "root only\n" and (conf / "storage.conf").is_symlink()


@needs_root
def test_a_linked_folder_on_the_way_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "rootdir").mkdir()
    (home / ".config").symlink_to(tmp_path / "rootdir")
    os.lchown(home, NOBODY, NOBODY)
    opened = homefiles.user_dir(str(home), (".config", "containers"), NOBODY, NOBODY, True)
    with pytest.raises(homefiles.HomeRefused, match="link or not a folder"), opened:
        pass
    assert list((tmp_path / "rootdir").iterdir()) == []


@needs_root
def test_a_hard_link_or_someone_elses_file_is_not_read(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    os.chown(home, NOBODY, NOBODY)
    (home / "mine").write_text("a")
    os.chown(home / "mine", NOBODY, NOBODY)
    os.link(home / "mine", home / "second")  # two names: could be a root file elsewhere
    (home / "roots").write_text("b")
    with homefiles.user_dir(str(home), (), NOBODY, NOBODY) as fd:
        assert fd is not None
        for name in ("mine", "roots"):
            with pytest.raises(homefiles.HomeRefused, match="not a plain file of the user's"):
                homefiles.read_file(fd, name, NOBODY, name)


@needs_root
def test_a_write_is_the_users_file_in_place_of_the_old(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    os.chown(home, NOBODY, NOBODY)
    with homefiles.user_dir(str(home), ("a", "b"), NOBODY, NOBODY, create=True) as fd:
        assert fd is not None
        homefiles.write_file(fd, "f.conf", "one\n", NOBODY, NOBODY, "f.conf")
        assert homefiles.read_file(fd, "f.conf", NOBODY, "f.conf") == "one\n"
    info = (home / "a" / "b" / "f.conf").stat()
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (NOBODY, 0o644)
    assert (home / "a").stat().st_uid == NOBODY and sorted(os.listdir(home / "a" / "b")) == [
        "f.conf"
    ]


@needs_root
def test_a_planted_runtime_folder_is_replaced_by_the_users_own(tmp_path: Path) -> None:
    root = tmp_path / "run"
    root.mkdir(mode=0o777)
    root.chmod(0o777)
    alice, bob = _user(4242, tmp_path), _user(4343, tmp_path, "bob")
    (root / "4242").mkdir()
    os.chown(root / "4242", NOBODY, NOBODY)  # planted by another user while root was open
    (root / "4242" / "podman").mkdir()
    (root / "4343").symlink_to(tmp_path)  # a link where bob's folder goes
    found = ensure_run_dirs([alice, bob], tmp_path / "sys", root)
    for uid in (4242, 4343):
        info = (root / str(uid)).lstat()
        assert stat.S_ISDIR(info.st_mode)
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (uid, 0o700)
        assert list((root / str(uid)).iterdir()) == []
    assert (root.stat().st_uid, stat.S_IMODE(root.stat().st_mode)) == (0, 0o755)
    assert any("removed" in c and "4242" in c for c in found.changes), found.changes
    assert tmp_path.exists()  # the link was removed, not followed
    again = ensure_run_dirs([alice, bob], tmp_path / "sys", root)
    assert again.changes == [] and again.problems == []


def test_tmpfiles_keeps_other_users_lines(tmp_path: Path) -> None:
    alice = _user(4242, tmp_path)
    old = "d /run/nbcontainers/5000 0700 5000 5000 -\n"
    text = tmpfiles_text([alice], old)
    assert "d /run/nbcontainers 0755 root root -" in text
    assert "d /run/nbcontainers/5000 0700 5000 5000 -" in text
    assert "d /run/nbcontainers/4242 0700 4242 4242 -" in text


def test_root_owned_refuses_a_path_a_user_could_swap(tmp_path: Path) -> None:
    assert root_owned(Path("/etc/passwd"))
    if os.geteuid() == 0:
        (tmp_path / "open").mkdir(mode=0o777)
        (tmp_path / "open").chmod(0o777)
        assert not root_owned(tmp_path / "open" / "f")


@pytest.mark.parametrize(
    ("err", "fix"),
    [
        ("crun: cgroups in hybrid mode not supported", 'runtime = "runc"'),
        ("cannot find mappings for user alice: no subuid ranges found", "sub-uid"),
        ("slirp4netns failed: open(/dev/net/tun): Permission denied", "chmod 0666 /dev/net/tun"),
        ("error joining rootless-netns: no such file", "stale rootless network"),
        (
            'invalid internal status, try resetting the pause process with "podman system '
            'migrate": could not find any running process',
            "podman system migrate",
        ),
    ],
)
def test_each_start_failure_gets_its_fix(err: str, fix: str) -> None:
    who = AsUser(_user(4242, Path("/home/alice")), Path("/x"), Path("/run/nbcontainers/4242"))
    facts = probe.HostFacts(0o600, 0, "hybrid", False, ("runc",))
    assert fix in probe._diagnose(err, who, facts)


def test_the_hosts_facts_are_said_not_hidden() -> None:
    lines = probe.HostFacts(0o600, 0, "hybrid", False, ("runc",)).lines()
    text = "\n".join(lines)
    assert "/dev/net/tun: mode 0600, NOT usable by users" in text
    assert "crun refuses this layout, runc works" in text
    assert "systemd: not running" in text


def test_setpriv_is_what_runs_the_users_commands() -> None:
    assert subprocess.run(["setpriv", "--version"], capture_output=True).returncode == 0
