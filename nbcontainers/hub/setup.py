"""``nbcontainers hub setup``: prepare a shared host (as root) so that every user gets container
kernels on their own rootless Podman. Idempotent; every step says what it found and did.

Everything run as a user gets no terminal, a new session and root-owned engine configuration,
and files in users' homes are opened without following links (``hub/asuser.py``,
``hub/homefiles.py``).

1. Podman and uidmap are installed (else: the apt line); the host's facts are reported
   (``/dev/net/tun``, cgroups, OCI runtimes, systemd).
2. Each user has a sub-uid/sub-gid range (else: the ``usermod`` line, run with ``--fix``) and
   a home other users can't read (else: the ``chmod`` line, run with ``--fix``).
3. Each user's storage driver: a user who has no Podman storage yet gets native overlay where
   a probe shows it works on this kernel (a kernel starts in ~1 s instead of copying the whole
   image, 3-15 s, as vfs does); a user with a store keeps its driver (changing it would hide
   the user's images).
   Each user is in the group ``nbcontainers`` (``hub/group.py``) and has a runtime folder
   ``/run/nbcontainers/UID`` that only root could have made (``hub/rundirs.py``).
4. The catalog images built on the system Docker engine are in the shared store (loaded with
   ``docker save | podman load`` when missing or changed), readable by the group only, with no
   setuid/setgid bit or file capability left in it; its parents are never widened. Users on the
   store's driver (vfs) read it; overlay users get their own copy, since a root-owned overlay
   store can't serve rootless engines (tested: "creating /etc/mtab symlink: permission denied").
5. ``/etc/containers/storage.conf`` and each user's ``storage.conf`` name the store (or, for
   overlay users, the driver).
6. Each user's engine lists each image and starts one throwaway container (``--network
   none``, removed after) and its rootless network: what stops it is a report line with the fix
   (``hub/probe.py``).
7. Where systemd runs, each user's slice gets the policy's per-user limits (``hub/slices.py``).
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..catalog import load_catalog
from ..errors import ConfigError
from ..runtimes.podman_store import (
    DEFAULT_STORE,
    KNOWN_DRIVERS,
    STORAGE_CONF,
    SharedStore,
    add_store,
    drop_store,
    load_for_user,
    native_overlay_works,
    seal_store,
    unreachable_parents,
    user_image_id,
    user_storage_driver,
)
from . import homefiles
from .asuser import ENGINE_CONF_DIR, AsUser, clean, default_run_dir, root_owned
from .group import HUB_GROUP, ensure_group
from .probe import HostFacts, check_network, host_facts, try_container
from .rundirs import ensure_run_dirs
from .slices import write_slices
from .subids import UserCheck, check_users, hub_users

__all__ = ["SetupResult", "main", "run_setup"]

Echo = Callable[[str], None]
NAME_FORMAT = "{{.Repository}}:{{.Tag}}"
SKEL = Path("/etc/skel")
APT = "sudo apt-get install podman uidmap slirp4netns catatonit"
CONF_PARTS = (".config", "containers")
GRAPH_PARTS = (".local", "share", "containers", "storage")


@dataclass
class SetupResult:
    """What setup found: ``problems`` left for the admin (each with the command that fixes
    it), ``changes`` it made. Exit status 0 only when no problem is left."""

    changes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if self.problems else 0


def _write_root_file(path: Path, text: str) -> bool:
    """Write a root-owned 0644 file (folders 0755), only when its text changes."""
    if path.is_file() and not path.is_symlink() and path.read_text() == text:
        return False
    for folder in reversed([path.parent, *path.parent.parents]):
        if not folder.exists():
            folder.mkdir(mode=0o755)
            folder.chmod(0o755)
    tmp = path.with_name(path.name + ".nbcontainers-tmp")
    tmp.unlink(missing_ok=True)
    tmp.write_text(text)
    tmp.chmod(0o644)
    tmp.replace(path)
    return True


class _Engines:
    """The root-owned ``XDG_CONFIG_HOME`` folders setup's own calls as a user read, one per
    storage driver (``probe``: none, Podman detects the driver of an existing store)."""

    def __init__(self, store: SharedStore, res: SetupResult, echo: Echo) -> None:
        self.store, self.res, self.echo = store, res, echo

    def home(self, driver: str | None) -> Path:
        key = driver or "probe"
        folder = ENGINE_CONF_DIR / key
        if driver is None:
            text = (
                "# nbcontainers hub setup: no driver; Podman finds the one a store has\n[storage]\n"
            )
        elif driver == self.store.driver:
            text = add_store("", str(self.store.root), driver, system=False)
        else:
            text = drop_store("", str(self.store.root), driver)
        conf = folder / "containers" / "storage.conf"
        _write_root_file(conf, text)
        _write_root_file(folder / "containers" / "registries.conf", "# no registries\n")
        if not root_owned(conf):
            raise ConfigError(
                f"{conf} (or a folder above it) is not root's alone; setup hands users' engines "
                f"only root-owned configuration. Fix the owner/mode of {ENGINE_CONF_DIR}'s parents."
            )
        return folder

    def as_user(self, user: pwd.struct_passwd, driver: str | None) -> AsUser:
        return AsUser(user, self.home(driver), default_run_dir(user))


def _graph_layers(user: pwd.struct_passwd) -> list[str]:
    """The ``<driver>-layers`` folders of the user's graph root, read without following links."""
    try:
        with homefiles.user_dir(user.pw_dir, GRAPH_PARTS, user.pw_uid, user.pw_gid) as fd:
            if fd is None:
                return []
            return sorted(n for n in os.listdir(fd) if n.endswith("-layers"))
    except (homefiles.HomeRefused, OSError):
        return []


def _overlay_probe(engines: _Engines, user: pwd.struct_passwd) -> bool:
    scratch = Path(tempfile.mkdtemp(prefix="nbc-overlay-probe."))
    try:
        os.chown(scratch, user.pw_uid, user.pw_gid)
        return native_overlay_works(engines.as_user(user, None).run, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _plan_drivers(checks: Sequence[UserCheck], echo: Echo, engines: _Engines) -> dict[str, str]:
    """Each ready user's storage driver: the one of their store, else native overlay where the
    probe (run once, as the first new user) shows it works, else vfs."""
    drivers: dict[str, str] = {}
    overlay: bool | None = None
    for check in checks:
        if not check.ok:
            continue
        user = pwd.getpwnam(check.name)
        existing = user_storage_driver(engines.as_user(user, None).run, _graph_layers(user))
        if existing:
            note = " (switching would hide its images)" if existing != "overlay" else ""
            echo(f"  {check.name}: has {existing} storage, kept{note}")
            drivers[check.name] = existing
            continue
        if overlay is None:
            overlay = _overlay_probe(engines, user)
        drivers[check.name] = "overlay" if overlay else "vfs"
        why = "native overlay works on this kernel" if overlay else "native overlay fails here"
        echo(f"  {check.name}: no storage yet; {drivers[check.name]} ({why})")
    return drivers


def _check_users(checks: Sequence[UserCheck], fix: bool, echo: Echo, res: SetupResult) -> None:
    for check in checks:
        if check.ok:
            echo(f"  {check.name}: sub-uid/sub-gid range present")
        elif fix:
            subprocess.run(check.fix, check=True, timeout=60, stdin=subprocess.DEVNULL)
            echo(f"  {check.name}: added a range: {' '.join(check.fix)}")
            res.changes.append(f"sub-ids for {check.name}")
        else:
            echo(f"  {check.name}: NO sub-uid/sub-gid range; run: sudo {' '.join(check.fix)}")
            res.problems.append(f"sudo {' '.join(check.fix)}")
        try:  # the home itself, opened without following a link
            fd, mode = homefiles.home_mode(check.home)
        except (homefiles.HomeRefused, OSError) as exc:
            echo(f"  {check.name}: home {check.home} not checked: {exc}")
            continue
        try:
            if mode & 0o007:
                line = f"chmod 0700 {check.home}"
                if fix:
                    os.fchmod(fd, 0o700)
                    echo(
                        f"  {check.name}: home was {mode:04o}, now 0700 (other users can't read it)"
                    )
                    res.changes.append(line)
                else:
                    echo(
                        f"  {check.name}: home is {mode:04o}, readable by other users; run: {line}"
                    )
        finally:
            os.close(fd)


def _docker_image_id(docker: str, ref: str) -> str | None:
    done = subprocess.run(
        [docker, "image", "inspect", "--format", "{{.Id}}", ref],
        capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    return done.stdout.strip().removeprefix("sha256:") or None if done.returncode == 0 else None


def _load_images(
    store: SharedStore, names: Sequence[str], echo: Echo, res: SetupResult
) -> dict[str, str]:
    """Load into the store; returns the images the system engine has: ref -> image id."""
    available: dict[str, str] = {}
    catalog = load_catalog(include_user=False)
    docker = shutil.which("docker")
    for name in names or list(catalog):
        image = catalog[name]
        have = store.image_id(image.ref)
        source = _docker_image_id(docker, image.ref) if docker else None
        if source is None:
            msg = f"  {name}: {image.ref} is not on the system Docker engine"
            if have:
                echo(msg + "; the shared store keeps its copy")
            elif names:  # asked for by name: a problem; else only the images that are built
                echo(msg + f"; build it first: nbcontainers images build {name}")
                res.problems.append(f"nbcontainers images build {name}")
            else:
                echo(msg + f" (not built; `nbcontainers images build {name}` then rerun)")
            continue
        available[image.ref] = source
        if have == source:
            echo(f"  {name}: {image.ref} already in the shared store")
            continue
        echo(f"  {name}: loading {image.ref} into {store.root} (docker save | podman load) ...")
        store.load_from(docker or "docker", image.ref)
        res.changes.append(f"loaded {image.ref}")
    return available


def _seal(store: SharedStore, gid: int | None, echo: Echo, res: SetupResult) -> None:
    if not store.root.is_dir():
        return
    if gid is None:
        echo(f"  {store.root} left closed (0700): the group {HUB_GROUP} could not be made")
        return
    done = seal_store(store.root, gid)
    echo(
        f"  readable by group {HUB_GROUP} only ({store.root} root:{HUB_GROUP} 0750; "
        f"{done.modes} mode(s) changed; setuid/setgid removed from {len(done.setid_removed)} "
        f"file(s), file capabilities from {len(done.caps_removed)})"
    )
    blocked = unreachable_parents(store.root, gid)
    if blocked:
        echo(
            f"  users' engines cannot reach {store.root}: {', '.join(blocked)} has no search "
            "bit for them; setup widens no folder it did not make. Choose a store under a "
            f"folder users may pass (the default {DEFAULT_STORE}), or `chmod o+x` those "
            "folders yourself if that is what you want"
        )
        res.problems.append(f"make {store.root} reachable (see above)")


def _load_own_copies(
    users: Sequence[str],
    drivers: dict[str, str],
    available: dict[str, str],
    engines: _Engines,
    echo: Echo,
    res: SetupResult,
) -> None:
    """Users who can't read the shared store get the images in their own storage."""
    docker = shutil.which("docker") or "docker"
    for name in users:
        who = engines.as_user(pwd.getpwnam(name), drivers[name])
        for ref, source in available.items():
            if user_image_id(who.run, ref) == source:
                echo(f"  {name}: {ref} already in the user's own storage")
                continue
            echo(f"  {name}: loading {ref} into the user's own storage ...")
            try:
                load_for_user(who.run, docker, ref)
            except RuntimeError as exc:  # one user's broken storage stops nobody else's
                echo(f"  {name}: {clean(str(exc))}")
                res.problems.append(f"check `podman info` as {name}, then rerun hub setup")
                continue
            res.changes.append(f"loaded {ref} for {name}")
            if user_image_id(who.run, ref) != source:
                echo(f"  {name}'s engine does not list {ref} after loading it")
                res.problems.append(f"check `podman images` as {name}")


def _write_conf(conf: Path, store: SharedStore, echo: Echo, res: SetupResult) -> None:
    old = conf.read_text() if conf.is_file() else ""
    new = add_store(old, str(store.root), store.driver)
    if new == old:
        echo(f"  {conf} already names {store.root}")
        return
    conf.parent.mkdir(parents=True, exist_ok=True)
    tmp = conf.with_name(conf.name + ".nbcontainers-tmp")
    tmp.write_text(new)
    tmp.chmod(0o644)
    tmp.replace(conf)
    echo(f"  wrote {conf}: additionalimagestores includes {store.root}, driver {store.driver}")
    res.changes.append(f"wrote {conf}")


def _write_user_conf(
    user: pwd.struct_passwd, driver: str, store: SharedStore, echo: Echo, res: SetupResult
) -> None:
    """One user's ``~/.config/containers/storage.conf``, read and written by root without
    following a link (``hub/homefiles.py``)."""
    where = f"{user.pw_dir}/.config/containers/storage.conf"
    uid, gid = user.pw_uid, user.pw_gid
    try:
        with homefiles.user_dir(user.pw_dir, CONF_PARTS, uid, gid, create=True) as fd:
            assert fd is not None
            old = homefiles.read_file(fd, "storage.conf", uid, where) or ""
            if driver == store.driver:
                new, what = add_store(old, str(store.root), driver, system=False), "the store"
            else:
                new, what = drop_store(old, str(store.root), driver), f"{driver}, own images"
            if new == old:
                echo(f"  {user.pw_name}: ~/.config/containers/storage.conf already set ({what})")
                return
            homefiles.write_file(fd, "storage.conf", new, uid, gid, where)
    except (homefiles.HomeRefused, ValueError) as exc:  # ValueError: not TOML
        echo(f"  {user.pw_name}: {clean(str(exc))}")
        res.problems.append(f"{where}: {clean(str(exc), 200)}")
        return
    echo(
        f"  {user.pw_name}: wrote ~/.config/containers/storage.conf ({what};"
        " an engine already running sees it once restarted)"
    )
    res.changes.append(f"storage.conf of {user.pw_name}")


def _write_user_confs(
    checks: Sequence[UserCheck],
    drivers: dict[str, str],
    store: SharedStore,
    echo: Echo,
    res: SetupResult,
) -> None:
    """Podman 4.x's rootless engines ignore the system file's ``additionalimagestores``, so
    each user's own ``storage.conf`` names the store too, or for a user on another driver
    that driver. ``/etc/skel`` gets one for users added later (vfs and the store)."""
    for check in checks:
        driver = drivers.get(check.name, store.driver)
        _write_user_conf(pwd.getpwnam(check.name), driver, store, echo, res)
    skel = SKEL / ".config" / "containers" / "storage.conf"
    old = skel.read_text() if skel.is_file() else ""
    new = add_store(old, str(store.root), store.driver, system=False)
    if new != old:
        skel.parent.mkdir(parents=True, exist_ok=True)
        skel.write_text(new)
        echo(f"  wrote {skel} (users added with `useradd -m` get it)")
        res.changes.append(f"wrote {skel}")


def _verify(
    users: Sequence[str], store: SharedStore, engines: _Engines, echo: Echo, res: SetupResult
) -> None:
    """Each user on the store's driver lists every shared image."""
    wanted = store.images() if users and store.root.is_dir() else []
    for name in users:
        who = engines.as_user(pwd.getpwnam(name), store.driver)
        listed = who.run("podman", "images", "--format", NAME_FORMAT)
        missing = [ref for ref in wanted if ref not in listed.stdout.split()]
        if listed.returncode != 0 or missing:
            detail = clean(listed.stderr) or f"missing: {', '.join(missing)}"
            echo(f"  {name}'s engine does not list the shared images: {detail}")
            res.problems.append(f"check `podman images` as {name}")
        else:
            echo(f"  {name}'s engine lists all {len(wanted)} shared image(s), read-only")


def _try_users(
    drivers: dict[str, str],
    available: dict[str, str],
    engines: _Engines,
    facts: HostFacts,
    echo: Echo,
    res: SetupResult,
) -> None:
    """One throwaway container and the rootless network, as each user."""
    image = next(iter(available), None)
    for name, driver in drivers.items():
        who = engines.as_user(pwd.getpwnam(name), driver)
        if image is None:
            echo(f"  {name}: no image to start a throwaway container from (load one first)")
            continue
        for outcome in (try_container(who, image, facts), check_network(who, facts)):
            echo("  " + outcome.line)
            if not outcome.ok:
                res.problems.append(f"{name}: {outcome.fix}")


def run_setup(
    users: Sequence[str] = (),
    images: Sequence[str] = (),
    fix: bool = False,
    store_root: Path = DEFAULT_STORE,
    conf: Path = STORAGE_CONF,
    driver: str | None = None,
    echo: Echo = print,
    system_root: Path = Path("/"),
) -> SetupResult:
    """Run every step; see the module docstring. ``users`` default to every user with uid
    >= 1000 and a home; ``images`` to every catalog image built on the system engine."""
    res = SetupResult()
    if os.geteuid() != 0:
        res.problems.append("run as root: sudo nbcontainers hub setup")
        echo("nbcontainers hub setup must run as root (it writes /etc and the shared store).")
        return res
    if any(shutil.which(tool) is None for tool in ("podman", "newuidmap", "setpriv")):
        echo(f"Podman or uidmap is missing; install them: {APT}")
        res.problems.append(APT)
        return res
    if driver is not None and driver not in KNOWN_DRIVERS:
        echo(f"Unknown storage driver {driver!r}; choose one of {', '.join(KNOWN_DRIVERS)}.")
        res.problems.append(f"--driver {' or '.join(KNOWN_DRIVERS)}")
        return res
    facts = host_facts()
    echo("This host:")
    for line in facts.lines():
        echo(f"  {line}")
    echo("Users (sub-uid/sub-gid ranges for rootless engines):")
    entries = hub_users(users)
    checks = check_users(entries)
    _check_users(checks, fix, echo, res)
    checks = check_users(hub_users(users)) if fix else checks  # ranges added just now count
    echo(f"Group {HUB_GROUP} (the only readers of the shared store) and runtime folders:")
    group = ensure_group([c.name for c in checks])
    rundirs = ensure_run_dirs(entries, system_root)
    for line in group.changes + rundirs.changes:
        echo(f"  {line}")
    for line in group.problems + rundirs.problems:
        echo(f"  {line}")
    res.changes += group.changes + rundirs.changes
    res.problems += group.problems + rundirs.problems
    store = SharedStore(store_root, driver or "vfs")
    engines = _Engines(store, res, echo)
    echo("Storage drivers of users' engines:")
    drivers = _plan_drivers(checks, echo, engines)
    echo(f"Shared image store {store.root} (storage driver {store.driver}):")
    available = _load_images(store, images, echo, res)
    _seal(store, group.gid, echo, res)
    echo("Engine configuration:")
    _write_conf(conf, store, echo, res)
    _write_user_confs(checks, drivers, store, echo, res)
    own = [name for name, d in drivers.items() if d != store.driver]
    if own:
        echo("Images in the own storage of users on another driver than the store's:")
        _load_own_copies(own, drivers, available, engines, echo, res)
    _verify([name for name, d in drivers.items() if d == store.driver], store, engines, echo, res)
    echo("A throwaway container and the rootless network, as each user:")
    _try_users(drivers, available, engines, facts, echo, res)
    echo("Per-user limits enforced by the OS (systemd slices, from the policy's user_* rules):")
    try:
        res.changes += write_slices([c.name for c in checks], echo, system_root)
    except ConfigError as exc:
        echo(f"  {exc}")
        res.problems.append("fix the policy file (see above)")
    echo(
        "Done: nothing to fix."
        if not res.problems
        else "Left to do:\n  " + "\n  ".join(res.problems)
    )
    return res


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m nbcontainers.hub.setup [--user NAME]... [--image NAME]... [--fix]``."""
    parser = argparse.ArgumentParser(
        prog="nbcontainers hub setup",
        description="Prepare a shared host (as root): every user gets container kernels on "
        "their own rootless Podman, with the catalog images from one shared read-only store.",
    )
    parser.add_argument(
        "--user",
        dest="users",
        metavar="NAME",
        action="append",
        default=[],
        help="a hub user (repeat); default: every user with uid >= 1000 and a home",
    )
    parser.add_argument(
        "--image",
        dest="images",
        metavar="NAME",
        action="append",
        default=[],
        help="a catalog image (repeat); default: every one built on the system engine",
    )
    parser.add_argument(
        "--fix",
        action="store_true",
        help="add missing sub-uid ranges and close homes other users can read",
    )
    parser.add_argument(
        "--store",
        type=Path,
        default=DEFAULT_STORE,
        help=f"shared store folder (default {DEFAULT_STORE})",
    )
    parser.add_argument(
        "--storage-conf",
        type=Path,
        default=STORAGE_CONF,
        help=f"engine config to update (default {STORAGE_CONF})",
    )
    parser.add_argument(
        "--driver",
        default=None,
        help="storage driver of the shared store (default vfs, the one a root-owned store "
        "can serve to rootless engines)",
    )
    parser.add_argument(
        "--system-root",
        type=Path,
        default=Path("/"),
        help="write the systemd slice drop-ins under this folder instead of / (packaging, tests)",
    )
    args = parser.parse_args(argv)  # fmt: skip
    res = run_setup(
        args.users, args.images, args.fix, args.store, args.storage_conf, args.driver,
        system_root=args.system_root,
    )  # fmt: skip
    return res.exit_code


if __name__ == "__main__":
    sys.exit(main())
