"""`nbcontainers doctor` on a host with several users: what one user could reach of another's.

Each check reads what the host shows (accounts, Jupyter connection files, listening sockets,
folder modes) and says the fix; none changes anything. On a host with one login user they
are skipped: the risks below are between users.
"""

from __future__ import annotations

import json
import os
import pwd
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from ..kernels.connection import other_login_users
from ..rundir import check_private, hub_user_dir, user_runtime_dir
from .checks import Check

__all__ = ["SecurityFacts", "security_checks", "security_facts", "tcp_listeners"]


@dataclass(frozen=True)
class SecurityFacts:
    """What the checks look at, gathered once so tests can state any host."""

    uid: int
    others: list[str]  # other login users (uid >= 1000, a real shell)
    runtime_dirs: list[Path]  # Jupyter runtime folders to read connection files from
    stores: list[Path]  # shared image stores (configured, or the default one that exists)
    policy: Path | None = None  # None: the policy file kernels read
    listening: set[int] = field(default_factory=set)  # TCP ports listening on this host
    run_users: list[pwd.struct_passwd] = field(default_factory=list)  # root: whose folders


def tcp_listeners() -> set[int]:
    """Ports in LISTEN state (IPv4 and IPv6), from /proc/net: what anyone can see too."""
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 3 and fields[3] == "0A":
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def _runtime_dirs(users: Iterable[pwd.struct_passwd]) -> list[Path]:
    from jupyter_core.paths import jupyter_runtime_dir

    found = [Path(jupyter_runtime_dir())]
    for user in users:  # root: every user's default one as well
        found.append(Path(user.pw_dir, ".local", "share", "jupyter", "runtime"))
    return list(dict.fromkeys(found))


def security_facts(stores: Sequence[Path] = ()) -> SecurityFacts:
    """This host's facts; ``stores`` are its shared image stores (the CLI asks the hub's
    ``shared_stores_here``: the store is the hub's, and its engine's configuration Podman's)."""
    uid = os.getuid()
    others = other_login_users(uid)
    users = [pwd.getpwnam(name) for name in others] if uid == 0 else []
    return SecurityFacts(
        uid=uid,
        others=others,
        runtime_dirs=_runtime_dirs(users),
        stores=list(stores),
        listening=tcp_listeners(),
        run_users=users,
    )


def security_checks(facts: SecurityFacts | None = None) -> list[Check]:
    """The multi-user checks, in the order of the threat model's rows."""
    facts = facts or security_facts()
    if not facts.others:
        return [Check("other users", "skip", "no other login users on this host")]
    checks = [
        Check(
            "other users",
            "ok",
            f"{len(facts.others)} other login user(s) on this host: checking what they could reach",
        )
    ]
    checks.append(_kernel_transport(facts))
    checks.append(_store(facts))
    checks += _runtime_folders(facts)
    checks.append(_policy(facts.policy))
    return checks


def _kernel_transport(facts: SecurityFacts) -> Check:
    tcp, open_ipc = [], []
    for folder in facts.runtime_dirs:
        try:
            files = sorted(folder.glob("kernel-*.json"))
        except OSError:
            continue
        for path in files:
            try:
                info = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if not isinstance(info, dict):
                continue
            if info.get("transport", "tcp") == "tcp":
                ports = {info.get(k) for k in ("shell_port", "iopub_port")}
                if ports & facts.listening:  # a kernel that runs now, not a stale file
                    tcp.append(f"{path.name} (iopub {info.get('iopub_port')})")
            elif isinstance(info.get("ip"), str):  # sockets at <ip>-<n>: is their folder ours?
                where = Path(info["ip"]).parent
                try:
                    if where.stat().st_mode & 0o077 and str(where) not in open_ipc:
                        open_ipc.append(str(where))
                except OSError:
                    continue
    if tcp:
        return Check(
            "kernel transport",
            "warn",
            f"{len(tcp)} running kernel(s) listen on TCP, where every user of this host can "
            f"subscribe to their outputs (the key signs messages, it doesn't hide them): "
            f"{', '.join(tcp[:5])}",
            "run kernels on ipc: c.KernelManager.transport = 'ipc' in jupyter_server_config.py "
            "(examples/hub/jupyterhub_config.py passes --KernelManager.transport=ipc); keep "
            "TCP only for kernels on other hosts, with CurveZMQ",
        )
    if open_ipc:
        return Check(
            "kernel transport",
            "warn",
            f"ipc kernel sockets in folders other users can open: {', '.join(open_ipc)}",
            f"chmod 700 {' '.join(open_ipc)}",
        )
    return Check("kernel transport", "ok", "no running kernel listens on TCP")


def _reachable(path: Path) -> bool:
    """Whether any user may pass through ``path`` and every folder above it (o+x)."""
    try:
        return all(p.stat().st_mode & stat.S_IXOTH for p in (path, *path.parents))
    except OSError:
        return False


def _store(facts: SecurityFacts) -> Check:
    exposed = []
    for store in facts.stores:
        if not _reachable(store):  # e.g. 0750 root:<hub users' group>: others stop here
            continue
        try:
            entries = [store, *sorted(store.iterdir())[:50]]
        except OSError:
            continue
        for path in entries:
            try:
                mode = path.lstat().st_mode
            except OSError:
                continue
            if stat.S_ISDIR(mode) and mode & stat.S_IROTH and mode & stat.S_IXOTH:
                exposed.append(f"{path} ({stat.S_IMODE(mode):o})")
                break
    if not facts.stores:
        return Check("shared store", "skip", "no shared image store configured")
    if exposed:
        return Check(
            "shared store",
            "warn",
            "the shared image store is readable by every user of this host (the images' "
            f"private files and setuid programs included): {', '.join(exposed)}",
            "sudo nbcontainers hub setup (it makes the store readable by the hub's users only)",
        )
    return Check("shared store", "ok", f"not world-readable: {', '.join(map(str, facts.stores))}")


def _runtime_folders(facts: SecurityFacts) -> list[Check]:
    if facts.uid != 0:
        try:
            return [Check("runtime folder", "ok", str(user_runtime_dir()))]
        except ConfigError as exc:
            return [Check("runtime folder", "warn", str(exc), "see the message")]
    problems = []
    for user in facts.run_users:
        problem = _user_folder_problem(user)
        if problem:
            problems.append(f"{user.pw_name}: {problem}")
    if problems:
        return [
            Check(
                "runtime folders",
                "warn",
                "users' engine sockets and kernel-start locks need a folder nobody else can "
                "make or open: " + "; ".join(problems[:5]),
                "sudo nbcontainers hub setup (it makes /run/nbcontainers/UID for each user)",
            )
        ]
    return [Check("runtime folders", "ok", f"{len(facts.run_users)} user(s), each private")]


def _user_folder_problem(user: pwd.struct_passwd) -> str:
    """What is wrong with the folder ``user``'s engine socket and locks would use ("" when
    nothing), in rundir's order: logind's, hub setup's, else one made in the user's home."""
    how = ""
    for folder in (Path(f"/run/user/{user.pw_uid}"), hub_user_dir(user.pw_uid)):
        if folder.exists():
            try:
                check_private(folder, user.pw_uid, how)
                return ""
            except (ConfigError, OSError) as exc:
                return str(exc).strip()
    # The fallback under the home is made on first use; only a home others can write to (or
    # that is not the user's) lets someone plant it first.
    try:
        home = Path(user.pw_dir).lstat()
    except OSError:
        return f"no /run/nbcontainers/{user.pw_uid} and no home folder {user.pw_dir}"
    if home.st_uid != user.pw_uid or home.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return (
            f"no /run/nbcontainers/{user.pw_uid}, and the home {user.pw_dir} is not the "
            "user's alone"
        )
    return ""


def _policy(path: Path | None) -> Check:
    if path is None:
        from ..kernels.policy import POLICY_FILE

        path = POLICY_FILE
    try:
        info = path.lstat()
    except FileNotFoundError:
        return Check(
            "kernel policy",
            "warn",
            f"no {path}: nothing caps what a user's kernel may ask for (memory, GPUs, mounts)",
            f"write {path} as root (see README: the kernel policy)",
        )
    except OSError as exc:
        return Check("kernel policy", "warn", f"{path} can't be read ({exc.strerror})")
    unsafe = []
    for each, st in ((path, info), (path.parent, path.parent.lstat())):
        if st.st_uid != 0:
            unsafe.append(f"{each} belongs to uid {st.st_uid}")
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            unsafe.append(f"{each} is writable by others ({stat.S_IMODE(st.st_mode):o})")
    if stat.S_ISLNK(info.st_mode):
        unsafe.append(f"{path} is a link")
    if unsafe:
        return Check(
            "kernel policy",
            "warn",
            "a user could rewrite the admin's kernel policy: " + "; ".join(unsafe),
            f"sudo chown root:root {path} {path.parent} && sudo chmod 644 {path} && "
            f"sudo chmod 755 {path.parent}",
        )
    return Check("kernel policy", "ok", f"{path} belongs to root")
