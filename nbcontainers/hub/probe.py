"""What stops a user's rootless engine from starting a container, found before the user's
first kernel is an HTTP 500: the host's facts (``/dev/net/tun``, the cgroup layout, the OCI
runtimes, systemd) and, per user, one throwaway container (``--network none``, removed after)
and the rootless network the kernels use. Each failure becomes a report line with its fix.
"""

from __future__ import annotations

import grp
import os
import pwd
import secrets
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from ..runtimes.podman.userengine import remove_container, rootless_netns, run_throwaway
from .asuser import AsUser, clean

__all__ = ["HostFacts", "Outcome", "check_network", "host_facts", "try_container"]

TUN = Path("/dev/net/tun")
RUN_TIMEOUT = 300.0  # a vfs user's first container copies the whole image


@dataclass(frozen=True)
class HostFacts:
    tun_mode: int | None  # permission bits of /dev/net/tun; None: no such device
    tun_gid: int
    cgroups: str  # "v2", "hybrid" or "v1"
    systemd: bool
    runtimes: tuple[str, ...]  # OCI runtimes installed, crun/runc

    def lines(self) -> list[str]:
        """The facts as report lines, each with what it means for kernels."""
        if self.tun_mode is None:
            tun = f"{TUN}: missing; rootless networking (slirp4netns) cannot work: `modprobe tun`"
        elif self.tun_mode & 0o006 == 0o006:
            tun = f"{TUN}: mode {self.tun_mode:04o}, usable by users (rootless networking)"
        else:
            tun = (
                f"{TUN}: mode {self.tun_mode:04o}, NOT usable by users: rootless networking "
                f"(slirp4netns, the kernels' network) fails; fix: sudo chmod 0666 {TUN} "
                "(its mode on a standard host; make it stick with a udev rule)"
            )
        cgroups = {
            "v2": "cgroup v2 (unified): per-container limits work where the user has a "
            "delegated cgroup (systemd)",
            "hybrid": "cgroups hybrid (v1 + v2): rootless engines cannot set memory/CPU limits; "
            "crun refuses this layout, runc works",
            "v1": "cgroup v1: rootless engines cannot set memory/CPU limits",
        }[self.cgroups]
        systemd = (
            "systemd: running (per-user slices apply to lingering user sessions)"
            if self.systemd
            else "systemd: not running: no logind (no /run/user/UID: hub setup makes "
            "/run/nbcontainers/UID instead) and no per-user slices (per-user totals are not "
            "enforced by the OS)"
        )
        runtimes = ", ".join(self.runtimes) or "none"
        return [tun, cgroups, systemd, f"OCI runtimes installed: {runtimes}"]


def host_facts() -> HostFacts:
    try:
        info = TUN.stat()
        tun_mode: int | None = stat.S_IMODE(info.st_mode) if stat.S_ISCHR(info.st_mode) else None
        tun_gid = info.st_gid
    except OSError:
        tun_mode, tun_gid = None, 0
    fs = Path("/sys/fs/cgroup")
    if (fs / "cgroup.controllers").exists():
        cgroups = "v2"
    elif (fs / "unified").is_dir() and any((fs / "unified").iterdir()):
        cgroups = "hybrid"
    else:
        cgroups = "hybrid" if (fs / "unified").is_dir() else "v1"
    runtimes = tuple(r for r in ("crun", "runc") if shutil.which(r))
    return HostFacts(tun_mode, tun_gid, cgroups, Path("/run/systemd/system").is_dir(), runtimes)


def tun_usable(facts: HostFacts, user: pwd.struct_passwd) -> bool:
    if facts.tun_mode is None:
        return False
    if facts.tun_mode & 0o006 == 0o006:
        return True
    groups = os.getgrouplist(user.pw_name, user.pw_gid)
    return facts.tun_gid in groups and facts.tun_mode & 0o060 == 0o060


@dataclass(frozen=True)
class Outcome:
    ok: bool
    line: str  # for the report
    fix: str = ""  # for the "left to do" list when not ok


def _diagnose(err: str, who: AsUser, facts: HostFacts) -> str:
    """The fix for what a failed rootless start printed."""
    low = err.lower()
    name = who.name
    if "system migrate" in low:
        return f"as {name}: podman system migrate (its engine's state is stale: run with --fix)"
    if "hybrid mode" in low or ("crun" in low and "cgroup" in low):
        return (
            'crun refuses hybrid cgroups: set runtime = "runc" under [engine] in '
            "/etc/containers/containers.conf (apt-get install runc if missing)"
        )
    if (
        "newuidmap" in low
        or "subuid" in low
        or "cannot find mappings" in low
        or ("no subuid ranges" in low)
    ):
        return (
            f"give {name} a sub-uid/sub-gid range (hub setup --fix), then as {name}: "
            "podman system migrate"
        )
    if "/dev/net/tun" in low or "tun" in low.split():
        return f"sudo chmod 0666 {TUN}"
    if "rootless-netns" in low or "rootless netns" in low or "netns" in low:
        run = who.run_dir or Path("$XDG_RUNTIME_DIR")
        return (
            f"a stale rootless network namespace (its holder died): as {name}, "
            f"`podman system migrate`, or remove {run}/netns and "
            f"{run}/containers/networks/rootless-netns"
        )
    if "permission denied" in low and "storage" in low:
        return (
            f"{name} cannot read the shared store: {name} must be in group nbcontainers "
            "(hub setup adds them; it counts from a new login) and the store's parents traversable"
        )
    return f"as {name}: podman --log-level=debug run --rm --network none IMAGE true says more"


def try_container(who: AsUser, image: str, facts: HostFacts) -> Outcome:
    """Start (and remove) one throwaway container as the user from ``image``."""
    name = f"nbc-setup-probe-{secrets.token_hex(4)}"
    try:
        done = run_throwaway(who.run, name, image, RUN_TIMEOUT)
    except Exception as exc:  # a hang or a missing tool: one user's line, not a crash
        remove_container(who.run, name)
        return Outcome(False, f"{who.name}: the throwaway container did not finish: {exc}",
                       f"as {who.name}: podman run --rm --network none {image} true")  # fmt: skip
    if done.returncode == 0:
        return Outcome(True, f"{who.name}: a throwaway container started and was removed "
                             f"({image}, --network none)")  # fmt: skip
    remove_container(who.run, name)
    err = clean(done.stderr)
    fix = _diagnose(done.stderr, who, facts)
    if "crun" in fix and "runc" in facts.runtimes:
        again = run_throwaway(who.run, name, image, RUN_TIMEOUT, oci_runtime="runc")
        if again.returncode == 0:
            fix += " (a container with --runtime runc started here)"
    return Outcome(False, f"{who.name}: NO container starts: {err}; fix: {fix}", fix)


def check_network(who: AsUser, facts: HostFacts) -> Outcome:
    """Whether the user's rootless network (what kernels join) can be set up."""
    if not tun_usable(facts, who.user):
        fix = f"sudo chmod 0666 {TUN}"
        return Outcome(
            False,
            f"{who.name}: NO rootless network: {TUN} is mode {facts.tun_mode or 0:04o} "
            f"(group {_group(facts.tun_gid)}); kernels need it; fix: {fix}",
            fix,
        )
    done = rootless_netns(who.run)
    if done.returncode == 0:
        return Outcome(True, f"{who.name}: the rootless network namespace works")
    fix = _diagnose(done.stderr, who, facts)
    return Outcome(False, f"{who.name}: NO rootless network: {clean(done.stderr)}; fix: {fix}", fix)


def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)
