"""Each user's rootless Podman engine as a service: started on demand (after checking what a
rootless engine needs: the binary, a sub-uid range), answering on the user's socket, exiting
when idle, and reset after a kill left its state behind. ``runtime.py`` is the
runtime that talks to it.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import os
import shutil
import socket
import stat
import subprocess
import time
from pathlib import Path

from ...errors import ConfigError, EngineUnavailable

__all__ = [
    "DEFAULT_IDLE",
    "IDLE_ENV",
    "INSTALL",
    "SERVICE_WAIT",
    "STALE_PAUSE",
    "ensure_service",
    "idle_timeout",
    "missing_tools",
    "start_fix",
    "start_fix_here",
    "user_name",
]

# What installs a rootless engine on Debian and Ubuntu (named by `doctor` and `hub setup` too).
INSTALL = "sudo apt-get install podman uidmap slirp4netns catatonit"
SERVICE_WAIT = 15.0  # seconds for a freshly started engine to answer
IDLE_ENV = "NBCONTAINERS_PODMAN_IDLE"
DEFAULT_IDLE = 600  # seconds an engine with no client waits before it exits
# What rootless podman says when its pause process is gone and the containers its database
# calls running can't be joined either (their conmon was killed with it).
STALE_PAUSE = "try resetting the pause process"


def _answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


SUBID_FILES = (Path("/etc/subuid"), Path("/etc/subgid"))


def user_name(uid: int) -> str | None:
    """This process's user name, or ``None`` where it has none: a uid with no passwd entry and
    no ``USER``/``LOGNAME`` (a container or a spawner run with a bare uid), where
    ``getpass.getuser()`` raises (KeyError before Python 3.13, OSError after)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None


def _has_subuid_range(user: str | None, uid: int) -> bool:
    try:
        lines = SUBID_FILES[0].read_text().splitlines()
    except OSError:
        return False
    return any(line.split(":", 1)[0] in (user, str(uid)) for line in lines)


def _free_subid_span() -> str:
    """``A-B``: 65536 ids above every range in ``/etc/subuid`` and ``/etc/subgid`` (from
    100000, where ``useradd`` starts), so the ``usermod`` line can be run as printed."""
    start = 100000
    for path in SUBID_FILES:
        with contextlib.suppress(OSError):
            for line in path.read_text().splitlines():
                parts = line.strip().split(":")
                if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                    start = max(start, int(parts[1]) + int(parts[2]))
    return f"{start}-{start + 65535}"


def start_fix(*, systemd: bool, installed: bool) -> str:
    """The command that gets the user's rootless engine answering: installing it where it is
    missing, its socket unit under systemd, else the service in the background."""
    if not installed:
        return INSTALL
    if systemd:
        return "systemctl --user enable --now podman.socket"
    return "podman system service --time=0 &"


def start_fix_here() -> str:
    """:func:`start_fix` for this host."""
    installed = shutil.which("podman") is not None
    return start_fix(systemd=os.path.isdir("/run/systemd/system"), installed=installed)


def missing_tools() -> list[str]:
    """The programs a rootless engine needs that are not installed here (podman, newuidmap
    from uidmap): :data:`INSTALL` installs them."""
    return [tool for tool in ("podman", "newuidmap") if shutil.which(tool) is None]


def _preflight() -> str:
    """The podman executable, or an error naming what to install or configure."""
    podman = shutil.which("podman")
    if podman is None or shutil.which("newuidmap") is None:
        missing = "Podman is not installed" if podman is None else "uidmap is not installed"
        raise EngineUnavailable(
            f"{missing}, so there is no rootless engine for you here. Ask your admin to run "
            f"`{INSTALL}` (then "
            "`nbcontainers hub setup`)."
        )
    uid = os.getuid()
    user = user_name(uid)
    if uid != 0 and not _has_subuid_range(user, uid):
        span = _free_subid_span()
        if user is None:
            # `usermod` needs a login name; /etc/subuid takes a uid as well (newuidmap too).
            start = span.split("-")[0]
            raise EngineUnavailable(
                f"Your uid {uid} has no user name (no passwd entry, no USER variable) and no "
                "sub-uid range, which a rootless engine needs. Ask your admin to add the line "
                f"`{uid}:{start}:65536` to /etc/subuid and /etc/subgid (a free range here), "
                f"or to give uid {uid} a passwd entry and run `sudo nbcontainers hub setup --fix`."
            )
        raise EngineUnavailable(
            f"User {user} has no sub-uid range, which a rootless engine needs. Ask your admin "
            f"to run `sudo usermod --add-subuids {span} --add-subgids {span} {user}` (a free "
            "range here), then `podman system migrate`; `sudo nbcontainers hub setup --fix` "
            "does the same for every user."
        )
    return podman


def idle_timeout() -> int:
    """Seconds the user's engine may sit with no client before it exits (``0``: never), from
    ``NBCONTAINERS_PODMAN_IDLE``; a value that is not a whole number of seconds is refused."""
    raw = os.environ.get(IDLE_ENV, "").strip()
    if not raw:
        return DEFAULT_IDLE
    if not raw.isdigit():
        raise ConfigError(
            f"{IDLE_ENV}={raw!r} is not a whole number of seconds. Set it to how long your "
            f"Podman engine may sit idle before it exits (e.g. {IDLE_ENV}={DEFAULT_IDLE}), or to "
            "0 to keep it running, or unset it."
        )
    return int(raw)


def ensure_service(path: Path, wait: float = SERVICE_WAIT) -> None:
    """Start the user's engine on ``path`` unless something answers there already. It exits
    on its own after :func:`idle_timeout` seconds without a client.

    An engine killed with everything it ran (the OOM killer, an admin ending the user's
    processes) leaves containers its database still calls running, with their conmon and the
    pause process gone: every later podman call then fails ("invalid internal status, try
    resetting the pause process with podman system migrate", and migrate itself fails the
    same way). A reboot would have emptied the runtime folder, and podman would have reset its
    state; so where no process of the user's rootless engine survives, that is done here (its
    ``alive`` mark and the dead pause pid removed from the runtime folder) and the engine
    started once more."""
    if _answers(path):
        return
    idle = idle_timeout()
    podman = _preflight()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # One start at a time per user: a server's kernel start and its pool's refill often find
    # the engine gone together, and each would take the other's fresh engine for a survivor
    # of the dead one (and refuse to reset), or reset under it.
    with (path.parent / "nbcontainers-service.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _answers(path):
            _start_locked(podman, idle, path, wait)


def _start_locked(podman: str, idle: int, path: Path, wait: float) -> None:
    log_path = path.parent / "nbcontainers-service.log"
    env = {**os.environ, "XDG_RUNTIME_DIR": str(path.parent.parent)}
    said = _start_service([podman, "system", "service", f"--time={idle}"], path, env, wait)
    survivors = _rootless_processes() if said and STALE_PAUSE in said else None
    if survivors:
        with log_path.open("ab") as log:
            log.write(
                b"nbcontainers: not reset, still running: %s\n" % " ".join(survivors).encode()
            )
    elif survivors is not None:
        reset = _reset_podman_tmp(path.parent.parent)
        with log_path.open("ab") as log:
            log.write(
                b"nbcontainers: the engine's pause process and containers were killed: "
                b"its state reset as after a reboot (removed: %s)\n"
                % " ".join(map(str, reset)).encode()
            )
        said = _start_service([podman, "system", "service", f"--time={idle}"], path, env, wait)
    if said is None:
        return
    tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-10:])
    raise EngineUnavailable(
        f"Your rootless Podman engine did not start on {path} within {wait:.0f} s. Last lines "
        f"of {log_path}:\n{tail}\nTry `podman info` in a terminal; `podman system migrate` "
        "fixes most broken rootless set-ups."
    )


def _reset_podman_tmp(run_dir: Path) -> list[Path]:
    """Remove podman's ``alive`` mark and pause pid where this user's podman keeps them: under
    the runtime folder, or under ``$TMPDIR/podman-run-UID`` or ``$TMPDIR/containers-user-UID``,
    where podman settles (and records in its database for good) when it first ran without a
    usable runtime folder. Only the user's own real folders; returns what was removed."""
    uid = os.getuid()
    tmp = Path(os.environ.get("TMPDIR") or "/tmp")
    removed = []
    for top in (run_dir, tmp / f"podman-run-{uid}", tmp / f"containers-user-{uid}"):
        folder = top / "libpod" / "tmp"
        try:
            info = folder.lstat()
        except OSError:
            continue
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != uid:
            continue  # never someone else's folder, never through a link
        for name in ("alive", "pause.pid"):
            with contextlib.suppress(FileNotFoundError):
                (folder / name).unlink()
                removed.append(folder / name)
    return removed


def _rootless_processes(settle: float = 2.0) -> list[str]:
    """ "PID:NAME" of this user's processes in a user namespace other than this one's: the
    rootless engine's world (its service, pause process, conmon, containers). Waits up to
    ``settle`` seconds for none: a podman that has just failed may still be exiting there."""
    here = os.readlink("/proc/self/ns/user")
    deadline = time.monotonic() + settle
    while True:
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    mine = entry.stat().st_uid == os.getuid()
                    if mine and os.readlink(entry / "ns" / "user") != here:
                        name = (entry / "comm").read_text().strip()
                        found.append(f"{entry.name}:{name}")
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def _start_service(argv: list[str], path: Path, env: dict[str, str], wait: float) -> str | None:
    """Start ``argv`` listening on ``path``: None once it answers, else what it logged."""
    log_path = path.parent / "nbcontainers-service.log"
    with log_path.open("ab") as log:
        start = log.tell()
        # Its own session: the engine outlives the kernel or CLI call that started it. Not in
        # the caller's folder either: once that is deleted, conmon fails every container start
        # ("Failed to get working directory", the client sees "exit status 1").
        proc = subprocess.Popen(
            [*argv, f"unix://{path}"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd="/",
            start_new_session=True,
        )
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if _answers(path):
            return None
        if proc.poll() is not None and not _answers(path):
            break  # it died (another start may have won the socket: checked once more above)
        time.sleep(0.05)
    with log_path.open("rb") as log:
        log.seek(start)
        return log.read().decode(errors="replace") or "(nothing)"
