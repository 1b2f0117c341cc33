"""``nbcontainers hub setup``: prepare a shared host (as root) so that every user gets container
kernels on their own rootless Podman. Idempotent; every step says what it found and did.

1. Podman and uidmap are installed (else: the apt line).
2. Each user has a sub-uid/sub-gid range (else: the ``usermod`` line, run with ``--fix``) and
   a home other users can't read (else: the ``chmod`` line, run with ``--fix``).
3. Each user's storage driver: a user who has no Podman storage yet gets native overlay where
   a probe shows it works on this kernel (a kernel starts in ~1 s instead of copying the whole
   image, 3-15 s, as vfs does); a user with a store keeps its driver (changing it would hide
   the user's images).
4. The catalog images built on the system Docker engine are in the shared store (loaded with
   ``docker save | podman load`` when missing or changed) and readable by all. Users on the
   store's driver (vfs) read it; overlay users get their own copy, since a root-owned overlay
   store can't serve rootless engines (tested: "creating /etc/mtab symlink: permission denied").
5. ``/etc/containers/storage.conf`` and each user's ``storage.conf`` name the store (or, for
   overlay users, the driver).
6. Each user's engine lists each image.
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
    STORAGE_CONF,
    SharedStore,
    add_store,
    drop_store,
    load_for_user,
    make_readable,
    native_overlay_works,
    user_image_id,
    user_storage_driver,
)
from .slices import write_slices
from .subids import UserCheck, check_users, hub_users

__all__ = ["SetupResult", "main", "run_setup"]

Echo = Callable[[str], None]
NAME_FORMAT = "{{.Repository}}:{{.Tag}}"
SKEL = Path("/etc/skel")
APT = "sudo apt-get install podman uidmap slirp4netns catatonit"


@dataclass
class SetupResult:
    """What setup found: ``problems`` left for the admin (each with the command that fixes
    it), ``changes`` it made. Exit status 0 only when no problem is left."""

    changes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if self.problems else 0


def _as_user(user: pwd.struct_passwd, *argv: str) -> list[str]:
    """``argv`` as ``user`` with a login-like environment (``runuser`` needs root)."""
    env = [f"HOME={user.pw_dir}", f"USER={user.pw_name}", "PATH=/usr/local/bin:/usr/bin:/bin"]
    run_dir = f"/run/user/{user.pw_uid}"
    if os.path.isdir(run_dir):
        env.append(f"XDG_RUNTIME_DIR={run_dir}")
    return ["runuser", "-u", user.pw_name, "--", "env", "-i", *env, *argv]


def _overlay_probe(user: pwd.struct_passwd) -> bool:
    scratch = Path(tempfile.mkdtemp(prefix="nbc-overlay-probe."))
    try:
        os.chown(scratch, user.pw_uid, user.pw_gid)
        return native_overlay_works(_as_user(user), scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _plan_drivers(checks: Sequence[UserCheck], echo: Echo) -> dict[str, str]:
    """Each ready user's storage driver: the one of their store, else native overlay where the
    probe (run once, as the first new user) shows it works, else vfs."""
    drivers: dict[str, str] = {}
    overlay: bool | None = None
    for check in checks:
        if not check.ok:
            continue
        user = pwd.getpwnam(check.name)
        existing = user_storage_driver(_as_user(user), user.pw_dir)
        if existing:
            note = " (switching would hide its images)" if existing != "overlay" else ""
            echo(f"  {check.name}: has {existing} storage, kept{note}")
            drivers[check.name] = existing
            continue
        if overlay is None:
            overlay = _overlay_probe(user)
        drivers[check.name] = "overlay" if overlay else "vfs"
        why = "native overlay works on this kernel" if overlay else "native overlay fails here"
        echo(f"  {check.name}: no storage yet; {drivers[check.name]} ({why})")
    return drivers


def _check_users(checks: Sequence[UserCheck], fix: bool, echo: Echo, res: SetupResult) -> None:
    for check in checks:
        if check.ok:
            echo(f"  {check.name}: sub-uid/sub-gid range present")
        elif fix:
            subprocess.run(check.fix, check=True, timeout=60)
            echo(f"  {check.name}: added a range: {' '.join(check.fix)}")
            res.changes.append(f"sub-ids for {check.name}")
        else:
            echo(f"  {check.name}: NO sub-uid/sub-gid range; run: sudo {' '.join(check.fix)}")
            res.problems.append(f"sudo {' '.join(check.fix)}")
        mode = os.stat(check.home).st_mode & 0o777 if os.path.isdir(check.home) else 0
        if mode & 0o007:
            line = f"chmod 0700 {check.home}"
            if fix:
                os.chmod(check.home, 0o700)
                echo(f"  {check.name}: home was {mode:04o}, now 0700 (other users can't read it)")
                res.changes.append(line)
            else:
                echo(f"  {check.name}: home is {mode:04o}, readable by other users; run: {line}")


def _docker_image_id(docker: str, ref: str) -> str | None:
    done = subprocess.run(
        [docker, "image", "inspect", "--format", "{{.Id}}", ref],
        capture_output=True, text=True, timeout=60, check=False,
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


def _load_own_copies(
    users: Sequence[str], available: dict[str, str], echo: Echo, res: SetupResult
) -> None:
    """Users who can't read the shared store get the images in their own storage."""
    docker = shutil.which("docker") or "docker"
    for name in users:
        user = pwd.getpwnam(name)
        for ref, source in available.items():
            if user_image_id(_as_user(user), ref) == source:
                echo(f"  {name}: {ref} already in the user's own storage")
                continue
            echo(f"  {name}: loading {ref} into the user's own storage ...")
            try:
                load_for_user(_as_user(user), docker, ref)
            except RuntimeError as exc:  # one user's broken storage stops nobody else's
                echo(f"  {name}: {exc}")
                res.problems.append(f"check `podman info` as {name}, then rerun hub setup")
                continue
            res.changes.append(f"loaded {ref} for {name}")
            if user_image_id(_as_user(user), ref) != source:
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


_USER_CONF = '"$HOME/.config/containers/storage.conf"'
_WRITE_USER_CONF = (
    'umask 022; mkdir -p "$HOME/.config/containers" && '
    f"cat > {_USER_CONF}.nbc-tmp && mv -f {_USER_CONF}.nbc-tmp {_USER_CONF}"
)


def _write_user_confs(
    checks: Sequence[UserCheck],
    drivers: dict[str, str],
    store: SharedStore,
    echo: Echo,
    res: SetupResult,
) -> None:
    """Podman 4.x's rootless engines ignore the system file's ``additionalimagestores``, so
    each user's own ``storage.conf`` names the store too, or for a user on another driver
    that driver (read and written *as the user*: root must not follow a link a user planted).
    ``/etc/skel`` gets one for users added later (vfs and the store: works at once)."""
    for check in checks:
        user = pwd.getpwnam(check.name)
        driver = drivers.get(check.name, store.driver)
        argv = _as_user(user, "sh", "-c", f"cat {_USER_CONF} 2>/dev/null || true")
        old = subprocess.run(argv, capture_output=True, text=True, timeout=30, cwd="/").stdout
        if driver == store.driver:
            new, what = add_store(old, str(store.root), store.driver, system=False), "the store"
        else:
            new, what = drop_store(old, str(store.root), driver), f"{driver}, own images"
        if new == old:
            echo(f"  {check.name}: ~/.config/containers/storage.conf already set ({what})")
            continue
        argv = _as_user(user, "sh", "-c", _WRITE_USER_CONF)
        subprocess.run(argv, input=new, text=True, timeout=30, cwd="/", check=True)
        echo(
            f"  {check.name}: wrote ~/.config/containers/storage.conf ({what};"
            " an engine already running sees it once restarted)"
        )
        res.changes.append(f"storage.conf of {check.name}")
    skel = SKEL / ".config" / "containers" / "storage.conf"
    old = skel.read_text() if skel.is_file() else ""
    new = add_store(old, str(store.root), store.driver, system=False)
    if new != old:
        skel.parent.mkdir(parents=True, exist_ok=True)
        skel.write_text(new)
        echo(f"  wrote {skel} (users added with `useradd -m` get it)")
        res.changes.append(f"wrote {skel}")


def _verify(users: Sequence[str], store: SharedStore, echo: Echo, res: SetupResult) -> None:
    """Each user on the store's driver lists every shared image."""
    wanted = store.images() if users and store.root.is_dir() else []
    for name in users:
        argv = _as_user(pwd.getpwnam(name), "podman", "images", "--format", NAME_FORMAT)
        listed = subprocess.run(
            argv, capture_output=True, text=True, timeout=120, cwd="/", check=False
        )
        missing = [ref for ref in wanted if ref not in listed.stdout.split()]
        if listed.returncode != 0 or missing:
            detail = listed.stderr.strip()[-400:] or f"missing: {', '.join(missing)}"
            echo(f"  {name}'s engine does not list the shared images: {detail}")
            res.problems.append(f"check `podman images` as {name}")
        else:
            echo(f"  {name}'s engine lists all {len(wanted)} shared image(s), read-only")


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
    if shutil.which("podman") is None or shutil.which("newuidmap") is None:
        echo(f"Podman or uidmap is missing; install them: {APT}")
        res.problems.append(APT)
        return res
    echo("Users (sub-uid/sub-gid ranges for rootless engines):")
    checks = check_users(hub_users(users))
    _check_users(checks, fix, echo, res)
    checks = check_users(hub_users(users)) if fix else checks  # ranges added just now count
    echo("Storage drivers of users' engines:")
    drivers = _plan_drivers(checks, echo)
    store = SharedStore(store_root, driver or "vfs")
    echo(f"Shared image store {store.root} (storage driver {store.driver}):")
    available = _load_images(store, images, echo, res)
    if store.root.is_dir():
        changed = make_readable(store.root)
        echo(f"  readable by all users ({changed} mode(s) changed)")
    echo("Engine configuration:")
    _write_conf(conf, store, echo, res)
    _write_user_confs(checks, drivers, store, echo, res)
    own = [name for name, d in drivers.items() if d != store.driver]
    if own:
        echo("Images in the own storage of users on another driver than the store's:")
        _load_own_copies(own, available, echo, res)
    _verify([name for name, d in drivers.items() if d == store.driver], store, echo, res)
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
