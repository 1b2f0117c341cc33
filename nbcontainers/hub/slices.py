"""Hard per-user limits from the OS: systemd slice drop-ins
(``/etc/systemd/system/user-UID.slice.d/50-nbcontainers.conf``) with the policy's ``user_*``
rules (memory, CPU, tasks). nbcontainers' own rules are guardrails a user with a shell can step
around; these are not, but only for what runs *inside* the slice: the user's logins
(pam_systemd), the user's systemd instance (a login, or ``loginctl enable-linger``) and a
server that SystemdSpawner starts there (:func:`use_user_slices` sets that up). A server that
LocalProcessSpawner starts runs in the hub's own cgroup, and its kernels and engine with it:
none of them is covered. :func:`totals_note` says which case a process is in. Where systemd is
not running (a container, a machine booted with another init) nothing is written, and setup
says the totals are not enforced there."""

from __future__ import annotations

import importlib.util
import os
import pwd
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..kernels.policy import POLICY_FILE, Policy, load_policy, size_bytes

__all__ = [
    "DROP_IN",
    "MARK",
    "process_slice",
    "slice_text",
    "totals_note",
    "use_user_slices",
    "user_slice",
    "write_slices",
]

DROP_IN = "50-nbcontainers.conf"
MARK = "# Written by nbcontainers hub setup"
Echo = Callable[[str], None]


def slice_text(policy: Policy, user: str) -> str:
    """The drop-in for ``user``'s slice; empty when the policy sets no per-user limit."""
    lines = []
    if policy.user_mem_limit:
        lines.append(f"MemoryMax={size_bytes(policy.user_mem_limit)}")
    if policy.user_cpus:
        lines.append(f"CPUQuota={round(policy.user_cpus * 100)}%")
    if policy.user_tasks:
        lines.append(f"TasksMax={policy.user_tasks}")
    if not lines:
        return ""
    head = [
        f"{MARK} from {policy.source}: the OS holds {user} to these,",
        "# for everything the user runs (logins, the user's systemd and containers under it).",
        "[Slice]",
    ]
    return "\n".join([*head, *lines]) + "\n"


def _systemd_runs(root: Path) -> bool:
    """What ``sd_booted()`` checks: systemd is PID 1 once ``/run/systemd/system`` exists."""
    return (root / "run" / "systemd" / "system").is_dir()


def _init_name(root: Path) -> str:
    if root != Path("/"):
        return "unknown"
    try:
        return Path("/proc/1/comm").read_text().strip()
    except OSError:
        return "unknown"


def _totals(policy: Policy) -> str:
    """The policy's ``user_*`` rules as ``key=value`` words ("" for none)."""
    asked = {
        "user_mem_limit": policy.user_mem_limit,
        "user_cpus": policy.user_cpus,
        "user_tasks": policy.user_tasks,
    }
    return ", ".join(f"{key}={value}" for key, value in asked.items() if value)


def user_slice(uid: int) -> str:
    """The systemd slice that holds everything of ``uid`` that runs under logind."""
    return f"user-{uid}.slice"


def process_slice(pid: int | str = "self") -> str:
    """The ``user-UID.slice`` the process's cgroup lies under, "" for none (a system service
    such as the hub, a container, a host without systemd) or where ``/proc`` can't tell."""
    try:
        return _slice_in(Path(f"/proc/{pid}/cgroup").read_text())
    except OSError:
        return ""


def _slice_in(cgroups: str) -> str:
    for line in cgroups.splitlines():  # "0::/user.slice/user-1000.slice/…" (v2), "N:name:/…"
        for part in line.split(":", 2)[-1].split("/"):
            if part.startswith("user-") and part.endswith(".slice") and part[5:-6].isdigit():
                return part
    return ""


def totals_note(policy: Policy, uid: int, pid: int | str = "self", root: Path = Path("/")) -> str:
    """ "" when the policy's ``user_*`` totals hold for process ``pid`` of user ``uid`` (it runs
    in that user's slice on a systemd host, or the policy sets none); else one line saying
    that they do not, why, and what fixes it (for ``nbcontainers doctor``)."""
    totals = _totals(policy)
    if not totals:
        return ""
    if not _systemd_runs(root):
        return (
            f"The policy's per-user totals ({totals}) are NOT enforced on this host: systemd "
            f"is not running (PID 1 is {_init_name(root)}), so no user slice holds them. Only "
            "nbcontainers' guardrails apply; run the hub on a systemd host to enforce them."
        )
    found = process_slice(pid)
    if found != user_slice(uid):
        where = f"in {found}" if found else "outside every user slice (in the hub's cgroup?)"
        return (
            f"The policy's per-user totals ({totals}) do NOT cover this server: it runs {where}, "
            f"not in {user_slice(uid)}, and so do its kernels and engine. Start servers with "
            "SystemdSpawner in the user's slice (nbcontainers.hub.slices.use_user_slices in "
            "jupyterhub_config.py; see examples/hub/README.md)."
        )
    return ""


def use_user_slices(config: Any, echo: Echo = print) -> bool:
    """In a ``jupyterhub_config.py``: where systemd runs and jupyterhub-systemdspawner is
    installed, start each server as a transient unit in the user's own slice (SystemdSpawner,
    real Unix users, ``Slice=user-UID.slice``), so the ``user_*`` totals cover the server, its
    engine and its kernels; returns whether it did. Elsewhere it changes nothing and says why
    (``echo``): the servers then run in the hub's cgroup and the totals do not cover them."""
    if not _systemd_runs(Path("/")):
        echo(
            f"nbcontainers: systemd is not running (PID 1 is {_init_name(Path('/'))}): servers "
            "stay with the configured spawner, and per-user totals (user_*) are not enforced"
        )
        return False
    if importlib.util.find_spec("systemdspawner") is None:
        echo(
            "nbcontainers: jupyterhub-systemdspawner is not installed: servers stay with the "
            "configured spawner, outside the users' slices (`pip install "
            "jupyterhub-systemdspawner` to put them there)"
        )
        return False
    config.JupyterHub.spawner_class = "systemdspawner.SystemdSpawner"
    config.SystemdSpawner.dynamic_users = False  # kernels need the Unix user's sub-uids, home
    earlier = config.Spawner.get("pre_spawn_hook")

    def into_user_slice(spawner: Any) -> Any:
        uid = pwd.getpwnam(spawner.user.name).pw_uid
        props = dict(spawner.unit_extra_properties or {})
        props["Slice"] = user_slice(uid)
        spawner.unit_extra_properties = props
        return earlier(spawner) if callable(earlier) else None

    config.Spawner.pre_spawn_hook = into_user_slice
    return True


def write_slices(
    users: Sequence[str],
    echo: Echo,
    root: Path = Path("/"),
    policy_file: Path | None = None,
) -> list[str]:
    """Write (or remove, once the policy drops them) each user's drop-in under ``root``;
    returns the changes made. ``systemctl daemon-reload`` runs when ``root`` is ``/``."""
    policy_file = policy_file or root / POLICY_FILE.relative_to("/")
    policy = load_policy(policy_file)
    if not _systemd_runs(root):
        totals = _totals(policy)
        echo(
            f"  skipped: systemd is not running here (PID 1 is {_init_name(root)}), so no "
            "per-user slice limits; the policy's rules are guardrails only on this host"
            + (f". Its per-user totals ({totals}) are NOT enforced here" if totals else "")
        )
        return []
    changes: list[str] = []
    for name in users:
        uid = pwd.getpwnam(name).pw_uid
        path = root / "etc" / "systemd" / "system" / f"user-{uid}.slice.d" / DROP_IN
        new = slice_text(policy, name)
        old = path.read_text() if path.is_file() else ""
        if new == old:
            echo(f"  {name}: {path} " + ("up to date" if new else "not needed (no user_* rule)"))
            continue
        if not new:
            if old.startswith(MARK):  # the policy dropped its user_* rules: so do we
                path.unlink()
                echo(f"  {name}: removed {path} (no user_* rule in {policy.source or policy_file})")
                changes.append(f"removed {path}")
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(DROP_IN + ".tmp")
        tmp.write_text(new)
        os.chmod(tmp, 0o644)
        tmp.replace(path)
        limits = ", ".join(line for line in new.splitlines() if "=" in line and line[0] != "#")
        echo(f"  {name}: wrote {path} ({limits})")
        changes.append(f"wrote {path}")
    if changes and root == Path("/"):
        subprocess.run(["systemctl", "daemon-reload"], check=True, timeout=120)
        echo("  systemctl daemon-reload: the limits hold from the users' next login")
    if _totals(policy):
        echo(
            "  they cover what runs in each user's slice: logins, the user's systemd, and "
            "servers SystemdSpawner starts there (use_user_slices, examples/hub); servers "
            "LocalProcessSpawner starts run in the hub's cgroup, and their kernels are NOT covered"
        )
    return changes
