"""Hard per-user limits from the OS: systemd slice drop-ins
(``/etc/systemd/system/user-UID.slice.d/50-nbcontainers.conf``) with the policy's ``user_*``
rules (memory, CPU, tasks), for everything the user runs: logins, the user's systemd instance
and the rootless engine's containers under it. nbcontainers' own rules are guardrails a user
with a shell can step around; these are not. Where systemd is not running (a container, a
machine booted with another init) nothing is written and setup says so."""

from __future__ import annotations

import contextlib
import os
import pwd
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from ..kernels.policy import POLICY_FILE, Policy, load_policy, size_bytes

__all__ = ["DROP_IN", "MARK", "slice_text", "write_slices"]

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
        init = "unknown"
        if root == Path("/"):
            with contextlib.suppress(OSError):
                init = Path("/proc/1/comm").read_text().strip()
        echo(
            f"  skipped: systemd is not running here (PID 1 is {init}), so no per-user slice "
            "limits; the policy's rules are guardrails only on this host"
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
    return changes
