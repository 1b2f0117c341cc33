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
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from ..catalog.entries import load_catalog
from ..errors import ConfigError
from ..runtimes import cdi, get_runtime
from ..runtimes.base import ContainerRuntime
from ..runtimes.podman.service import INSTALL, missing_tools
from ..runtimes.podman.storageconf import STORAGE_CONF, add_store
from ..runtimes.podman.store import KNOWN_DRIVERS, source_image_id
from . import homefiles
from .group import HUB_GROUP, ensure_group
from .peruser import (
    Engines,
    heal_engines,
    load_own_copies,
    plan_drivers,
    try_users,
    verify,
    write_user_confs,
)
from .probe import host_facts
from .result import Echo, SetupResult
from .rundirs import ensure_run_dirs
from .seal import seal_store, unreachable_parents
from .slices import write_slices
from .store import DEFAULT_STORE, SharedStore
from .subids import UserCheck, check_users, hub_users

__all__ = ["SetupResult", "main", "run_setup"]

APT = INSTALL


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


def _load_images(
    store: SharedStore, system: ContainerRuntime, names: Sequence[str], echo: Echo, res: SetupResult
) -> dict[str, str]:
    """Load into the store from ``system`` (the system Docker engine, where the catalog images
    are built); returns the images it has: ref -> image id."""
    available: dict[str, str] = {}
    catalog = load_catalog(include_user=False)
    for name in names or list(catalog):
        image = catalog[name]
        have = store.image_id(image.ref)
        source = source_image_id(system, image.ref)  # None also where no engine answers
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
        store.load_from(system, image.ref)
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


def gpu_access(users: Sequence[str], echo: Echo) -> None:
    """Whether each user's rootless engine can open the GPU device nodes (it opens them as the
    user), with the line that grants it. A report, not a problem: the admin may mean some
    users to have no GPU."""
    spec = cdi.find_spec() or cdi.host_spec()
    if spec is None:
        return  # no GPU on this host: nothing to grant
    echo(f"GPU devices (GPUs {', '.join(spec.names())}; what each user's engine can open):")
    for user in users:
        blocked = cdi.unopenable(user, spec)
        if not blocked:
            echo(f"  {user}: can open every GPU device node")
            continue
        groups = ",".join(sorted(set(blocked.values())))
        echo(
            f"  {user}: can't open {', '.join(blocked)}; GPU kernels will be refused. If "
            f"{user} should use GPUs: sudo usermod -aG {groups} {user}"
        )


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
    if missing_tools() or shutil.which("setpriv") is None:  # setpriv: how setup acts as users
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
    # The system Docker engine (DOCKER_HOST or its default socket, as for the docker command),
    # through the registry: the catalog images are built there.
    system = get_runtime("docker")
    engines = Engines(store, system)
    echo("Storage drivers of users' engines:")
    drivers = plan_drivers(checks, echo, engines)
    heal_engines(drivers, engines, fix, echo, res)
    echo(f"Shared image store {store.root} (storage driver {store.driver}):")
    available = _load_images(store, system, images, echo, res)
    _seal(store, group.gid, echo, res)
    echo("Engine configuration:")
    _write_conf(conf, store, echo, res)
    write_user_confs(checks, drivers, store, echo, res)
    own = [name for name, d in drivers.items() if d != store.driver]
    if own:
        echo("Images in the own storage of users on another driver than the store's:")
        load_own_copies(own, drivers, available, engines, echo, res)
    verify([name for name, d in drivers.items() if d == store.driver], store, engines, echo, res)
    echo("A throwaway container and the rootless network, as each user:")
    try_users(store, drivers, available, engines, facts, echo, res)
    gpu_access([c.name for c in checks], echo)
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
