"""root ↔ user during ``hub setup``: a hub user with a shell prepares their home, then the
admin runs ``hub setup`` on a terminal (a pty here, root's controlling terminal). Proven with a
real Unix user made for the test, rootless Podman and the real shared store:

- the user's own ``containers.conf`` names a ``conmon_path``/``runtime`` of theirs, a script that
  records its session, its terminal and whether TIOCSTI (typing into root's shell) works: it
  never runs (on main it ran in root's session, on root's terminal, and typed into it);
- the user's ``storage.conf`` is a link to a root-only file: not followed, the file untouched;
- a planted ``/run/nbcontainers/UID`` (another user's, open to all) is replaced by the user's
  own 0700 folder, which another user cannot plant or enter;
- nobody outside the hub reads an image's ``/etc/shadow`` in the shared store and no
  setuid/setgid program or file capability is in it (on main: shadow readable by all, ``su``
  and ``mount`` setuid root for every host user);
- each user's report says whether a throwaway container started, and the host's facts.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pwd
import secrets
import signal
import stat
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from nbcontainers.runtimes.podman.store import DEFAULT_STORE

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

REQUIRE = os.environ.get("NBCONTAINERS_REQUIRE_DOCKER") == "1"
ROOT = Path(__file__).resolve().parents[2]
NOBODY = 65534
SECRET = "root-only-secret-" + secrets.token_hex(4)

EVIL = """#!/usr/bin/python3
import fcntl, json, os, sys, termios
rec = {"argv": sys.argv[1:], "uid": os.getuid(), "sid": os.getsid(0), "ttys": {}}
for fd in (0, 1, 2):
    try:
        rec["ttys"][fd] = os.ttyname(fd)
    except OSError:
        pass
try:
    fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    rec["dev_tty"] = os.ttyname(fd)
    try:
        fcntl.ioctl(fd, termios.TIOCSTI, b"#")
        rec["tiocsti"] = "typed"
    except OSError as exc:
        rec["tiocsti"] = str(exc)
except OSError as exc:
    rec["dev_tty"] = str(exc)
with open(LOG, "a") as f:
    f.write(json.dumps(rec) + "\\n")
print("conmon version 2.1.6")
print("commit: evil")
"""


def _missing(why: str) -> None:
    if REQUIRE:
        pytest.fail(why)
    pytest.skip(why)


def _user_procs(uid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and entry.stat().st_uid == uid:
                found.append(int(entry.name))
    return found


def _kill_all(uid: int) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in _user_procs(uid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 5
        while _user_procs(uid) and time.monotonic() < deadline:
            time.sleep(0.1)


def _as(uid: int, gid: int, *argv: str, groups: bool = False) -> subprocess.CompletedProcess[str]:
    """``argv`` as uid:gid (``groups``: with the user's supplementary groups, else none)."""
    ids = ["--init-groups"] if groups else ["--clear-groups"]
    return subprocess.run(
        ["setpriv", f"--reuid={uid}", f"--regid={gid}", *ids, *argv],
        capture_output=True, text=True, timeout=120, cwd="/", stdin=subprocess.DEVNULL,
        env={"PATH": "/usr/bin:/bin", "HOME": "/"}, check=False,
    )  # fmt: skip


@dataclass
class Run:
    user: pwd.struct_passwd
    report: str
    exit_code: int | None
    setup_sid: int
    pty_name: str
    evil_log: Path
    target: Path
    store: Path
    parents_before: dict[str, int]


def _chown_tree(path: Path, user: pwd.struct_passwd) -> None:
    for p in [path, *path.rglob("*")]:
        os.lchown(p, user.pw_uid, user.pw_gid)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    if os.geteuid() != 0:
        _missing("hub setup runs as root")
    for tool in ("/usr/bin/podman", "/usr/bin/newuidmap", "/usr/bin/setpriv", "/usr/bin/docker"):
        if not os.path.exists(tool):
            _missing(f"{tool} is missing (scripts/ensure-podman.sh)")
    name = "nbc-sec-" + secrets.token_hex(3)
    subprocess.run(["useradd", "-m", "-s", "/bin/bash", name], check=True, timeout=60)
    user = pwd.getpwnam(name)
    tmp = tmp_path_factory.mktemp("hubsetup")
    planted = Path("/run/nbcontainers", str(user.pw_uid))
    try:
        home = Path(user.pw_dir)
        # A user of an earlier deployment: an existing vfs store, made before any plant.
        subprocess.run(
            ["runuser", "-u", name, "--", "env", "-i", f"HOME={home}", "PATH=/usr/bin:/bin",
             "podman", "--storage-driver", "vfs", "info"],
            capture_output=True, timeout=120, cwd="/", stdin=subprocess.DEVNULL, check=True,
        )  # fmt: skip
        evil_log = home / "nbc-evil.jsonl"
        evil = home / "evil"
        evil.write_text(EVIL.replace("LOG", repr(str(evil_log))))
        evil.chmod(0o755)
        conf_dir = home / ".config" / "containers"
        conf_dir.mkdir(parents=True, exist_ok=True)
        (conf_dir / "containers.conf").write_text(
            f'[engine]\nconmon_path = ["{evil}"]\nruntime = "evil"\n'
            f'[engine.runtimes]\nevil = ["{evil}"]\n'
        )
        target = tmp / "root-only.conf"  # a root-owned file the user links to
        target.write_text(f"# {SECRET}\n")
        target.chmod(0o600)
        (conf_dir / "storage.conf").unlink(missing_ok=True)  # /etc/skel may have given one
        (conf_dir / "storage.conf").symlink_to(target)
        _chown_tree(home / ".config", user)
        os.lchown(evil, user.pw_uid, user.pw_gid)
        # Another user's folder where this user's runtime folder goes, open to everyone.
        Path("/run/nbcontainers").mkdir(mode=0o755, exist_ok=True)
        if planted.is_dir() and not planted.is_symlink():
            subprocess.run(["rm", "-rf", str(planted)], check=True)
        planted.mkdir()
        os.chown(planted, NOBODY, NOBODY)
        planted.chmod(0o777)
        parents = {str(p): p.stat().st_mode for p in DEFAULT_STORE.parents if p.exists()}

        # Root's terminal: the setup process gets a pty as its controlling terminal.
        master, slave = os.openpty()
        code = (
            "import sys\n"
            "from nbcontainers.hub.setup import run_setup\n"
            f"res = run_setup(users=[{name!r}], images=['python'], "
            f"conf=__import__('pathlib').Path({str(tmp / 'storage.conf')!r}), "
            f"system_root=__import__('pathlib').Path({str(tmp / 'sysroot')!r}))\n"
            "sys.exit(res.exit_code)\n"
        )
        proc = subprocess.Popen(
            [sys.executable, "-c", code], stdin=slave, stdout=slave, stderr=slave, cwd=ROOT,
            start_new_session=True,
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
        )  # fmt: skip
        pty_name = os.ttyname(slave)
        os.close(slave)
        chunks: list[bytes] = []

        def drain() -> None:
            while True:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    return
                if not data:
                    return
                chunks.append(data)

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        try:
            code_ = proc.wait(timeout=780)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            code_ = None
        reader.join(timeout=5)
        os.close(master)
        report = b"".join(chunks).decode(errors="replace").replace("\r\n", "\n")
        yield Run(
            user, report, code_, proc.pid, pty_name, evil_log, target,
            DEFAULT_STORE, parents,
        )  # fmt: skip
    finally:
        _kill_all(user.pw_uid)
        subprocess.run(["userdel", "-r", name], capture_output=True, timeout=60, check=False)
        subprocess.run(["rm", "-rf", str(planted)], check=False)


def _records(run: Run) -> list[dict[str, object]]:
    if not run.evil_log.exists():
        return []
    return [json.loads(line) for line in run.evil_log.read_text().splitlines() if line]


def test_the_users_engine_config_never_runs_a_program_of_theirs(run: Run) -> None:
    ran = _records(run)
    assert not ran, (
        f"the user's conmon/runtime ran {len(ran)} time(s) during hub setup; first: {ran[0]}\n"
        f"(setup's session id was {run.setup_sid})"
    )


def test_nothing_setup_runs_as_the_user_has_roots_terminal(run: Run) -> None:
    # What the probes of the other test would have found, checked on every record there is.
    for rec in _records(run):
        assert rec["sid"] != run.setup_sid, f"ran in root's session: {rec}"
        assert not rec["ttys"], f"had root's terminal on its fds: {rec}"
        assert rec.get("dev_tty") != run.pty_name, f"opened root's terminal: {rec}"
        assert rec.get("tiocsti") != "typed", f"typed into root's terminal: {rec}"


def test_a_linked_storage_conf_is_not_followed(run: Run) -> None:
    conf = Path(run.user.pw_dir, ".config", "containers", "storage.conf")
    info = run.target.lstat()
    assert run.target.read_text() == f"# {SECRET}\n"
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (0, 0o600)
    leaked = [
        p
        for p in Path(run.user.pw_dir).rglob("*")
        if p.is_file() and not p.is_symlink() and SECRET in p.read_text(errors="replace")
    ]
    assert not leaked, f"the root-only file's content landed in {leaked}"
    if conf.is_symlink():  # left alone: the report says so, with the fix
        assert "storage.conf is a link" in run.report, run.report


def test_the_runtime_folder_is_the_users_own_and_cannot_be_planted(run: Run) -> None:
    folder = Path("/run/nbcontainers", str(run.user.pw_uid))
    info = folder.lstat()
    assert stat.S_ISDIR(info.st_mode), run.report
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (run.user.pw_uid, 0o700), run.report
    parent = folder.parent.lstat()
    assert (parent.st_uid, stat.S_IMODE(parent.st_mode)) == (0, 0o755)
    # Another user can neither replace it nor add a folder of theirs beside it, nor look in.
    script = f"mkdir /run/nbcontainers/4242 || mv {folder} /run/nbcontainers/x || ls {folder}"
    probe = _as(NOBODY, NOBODY, "sh", "-c", script)
    assert probe.returncode != 0 and "Permission denied" in probe.stderr, probe
    assert not Path("/run/nbcontainers/4242").exists()


def test_nobody_outside_the_hub_reads_private_image_files(run: Run) -> None:
    shadows = [p for p in run.store.rglob("etc/shadow") if p.is_file() and not p.is_symlink()]
    assert shadows, f"no image in {run.store}: {run.report}"
    for shadow in shadows[:3]:
        read = _as(NOBODY, NOBODY, "cat", str(shadow))
        assert read.returncode != 0, f"nobody read {shadow}:\n{read.stdout[:200]}"


def test_no_setuid_program_or_file_capability_is_left_in_the_store(run: Run) -> None:
    risky = []
    for dirpath, _dirs, files in os.walk(run.store):
        for name in files:
            path = os.path.join(dirpath, name)
            mode = os.lstat(path).st_mode
            if stat.S_ISREG(mode) and mode & (stat.S_ISUID | stat.S_ISGID):
                risky.append(f"{path} {stat.filemode(mode)}")
            elif stat.S_ISREG(mode) and "security.capability" in os.listxattr(
                path, follow_symlinks=False
            ):
                risky.append(f"{path} has file capabilities")
    assert not risky, f"{len(risky)} in the store, e.g. {risky[:5]}"


def test_the_stores_parents_are_not_widened(run: Run) -> None:
    after = {str(p): p.stat().st_mode for p in run.store.parents}
    widened = {p: f"{m:o} -> {after[p]:o}" for p, m in run.parents_before.items() if after[p] != m}
    assert not widened, widened


def test_the_report_says_whether_a_container_starts_for_each_user(run: Run) -> None:
    print(run.report)  # shown with -rP: what an admin reads
    name = run.user.pw_name
    lines = [line for line in run.report.splitlines() if "throwaway container" in line]
    assert any(name in line for line in lines), run.report
    for fact in ("/dev/net/tun", "cgroup", "systemd"):
        assert fact in run.report, f"the report does not say anything about {fact}:\n{run.report}"
