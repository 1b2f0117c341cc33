"""The steps of ``hub setup`` that act as each user: their storage driver, a stale engine
reset, their ``storage.conf``, their own image copies, what their engine lists, and one
throwaway container. Every command goes through ``asuser.AsUser`` (no terminal, a new session,
root-owned engine config) and every file in a home through ``homefiles``."""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ..errors import ConfigError
from ..runtimes.base import ContainerRuntime
from ..runtimes.podman.storageconf import add_store, drop_store
from ..runtimes.podman.userengine import (
    list_images,
    load_for_user,
    migrate,
    native_overlay_works,
    store_driver,
    user_image_id,
    user_storage_driver,
)
from . import homefiles
from .asuser import ENGINE_CONF_DIR, AsUser, clean, default_run_dir, root_owned
from .probe import HostFacts, check_network, try_container
from .result import Echo, SetupResult
from .store import SharedStore
from .subids import UserCheck

__all__ = [
    "Engines",
    "heal_engines",
    "load_own_copies",
    "plan_drivers",
    "try_users",
    "verify",
    "write_user_confs",
]

SKEL = Path("/etc/skel")
CONF_PARTS = (".config", "containers")
GRAPH_PARTS = (".local", "share", "containers", "storage")


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


class Engines:
    """The root-owned ``XDG_CONFIG_HOME`` folders setup's own calls as a user read, one per
    storage driver (``probe``: none, Podman finds the driver of an existing store), and the
    system Docker engine (``system``) the images are copied from."""

    def __init__(self, store: SharedStore, system: ContainerRuntime) -> None:
        self.store = store
        self.system = system
        self._homes: dict[str, Path] = {}

    def home(self, driver: str | None) -> Path:
        key = driver or "probe"
        if key in self._homes:
            return self._homes[key]
        folder = ENGINE_CONF_DIR / key
        if driver is None:
            text = "# nbcontainers hub setup: no driver; Podman finds the one a store has\n"
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
        self._homes[key] = folder
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


def _overlay_probe(engines: Engines, user: pwd.struct_passwd) -> bool:
    scratch = Path(tempfile.mkdtemp(prefix="nbc-overlay-probe."))
    try:
        os.chown(scratch, user.pw_uid, user.pw_gid)
        return native_overlay_works(engines.as_user(user, None).run, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def plan_drivers(checks: Sequence[UserCheck], echo: Echo, engines: Engines) -> dict[str, str]:
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


def heal_engines(
    drivers: dict[str, str], engines: Engines, fix: bool, echo: Echo, res: SetupResult
) -> None:
    """A user whose engine died (a reboot, the OOM killer, an admin's kill) may have left
    state that stops every later command ("invalid internal status ... podman system
    migrate"): with ``--fix`` the engine is reset that way, as the user; else the report
    names the command."""
    for name, driver in drivers.items():
        who = engines.as_user(pwd.getpwnam(name), driver)
        info = store_driver(who.run)
        if info.returncode == 0 or "system migrate" not in info.stderr:
            continue
        line = f"as {name}: podman system migrate"
        if not fix:
            echo(f"  {name}: the engine's state is stale ({clean(info.stderr, 200)}); run: {line}")
            res.problems.append(line)
            continue
        migrate(who.run)
        again = store_driver(who.run)
        if again.returncode == 0:
            echo(
                f"  {name}: the engine's state was stale (its pause process had died); ran: {line}"
            )
            res.changes.append(f"podman system migrate for {name}")
        else:
            echo(f"  {name}: the engine still fails after `podman system migrate`: "
                 f"{clean(again.stderr)}")  # fmt: skip
            res.problems.append(f"check `podman info` as {name}")


def load_own_copies(
    users: Sequence[str],
    drivers: dict[str, str],
    available: dict[str, str],
    engines: Engines,
    echo: Echo,
    res: SetupResult,
) -> None:
    """Users who can't read the shared store get the images in their own storage."""
    for name in users:
        who = engines.as_user(pwd.getpwnam(name), drivers[name])
        for ref, source in available.items():
            if user_image_id(who.run, ref) == source:
                echo(f"  {name}: {ref} already in the user's own storage")
                continue
            echo(f"  {name}: loading {ref} into the user's own storage ...")
            try:
                load_for_user(who.run, engines.system, ref)
            except RuntimeError as exc:  # one user's broken storage stops nobody else's
                echo(f"  {name}: {clean(str(exc))}")
                res.problems.append(f"check `podman info` as {name}, then rerun hub setup")
                continue
            res.changes.append(f"loaded {ref} for {name}")
            if user_image_id(who.run, ref) != source:
                echo(f"  {name}'s engine does not list {ref} after loading it")
                res.problems.append(f"check `podman images` as {name}")


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
        why = clean(str(exc), 1000)
        echo(f"  {user.pw_name}: {why}")
        res.problems.append(f"{user.pw_name}: {why}")
        return
    echo(
        f"  {user.pw_name}: wrote ~/.config/containers/storage.conf ({what};"
        " an engine already running sees it once restarted)"
    )
    res.changes.append(f"storage.conf of {user.pw_name}")


def write_user_confs(
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


def verify(
    users: Sequence[str], store: SharedStore, engines: Engines, echo: Echo, res: SetupResult
) -> None:
    """Each user on the store's driver lists every shared image."""
    wanted = store.images() if users and store.root.is_dir() else []
    for name in users:
        who = engines.as_user(pwd.getpwnam(name), store.driver)
        listed = list_images(who.run)
        missing = [ref for ref in wanted if ref not in listed.stdout.split()]
        if listed.returncode != 0 or missing:
            detail = clean(listed.stderr) or f"missing: {', '.join(missing)}"
            echo(f"  {name}'s engine does not list the shared images: {detail}")
            res.problems.append(f"check `podman images` as {name}")
        else:
            echo(f"  {name}'s engine lists all {len(wanted)} shared image(s), read-only")


def try_users(
    store: SharedStore,
    drivers: dict[str, str],
    available: dict[str, str],
    engines: Engines,
    facts: HostFacts,
    echo: Echo,
    res: SetupResult,
) -> None:
    """One throwaway container and the rootless network, as each user, from an image this run
    loaded (else one the store has: an overlay user may then lack it, and the line says so)."""
    image = next(iter(available), None)
    if image is None and store.root.is_dir():
        image = next(iter(store.images()), None)
    for name, driver in drivers.items():
        who = engines.as_user(pwd.getpwnam(name), driver)
        if image is None:
            echo(f"  {name}: no image to start a throwaway container from (load one first)")
            continue
        for outcome in (try_container(who, image, facts), check_network(who, facts)):
            echo("  " + outcome.line)
            if not outcome.ok:
                res.problems.append(f"{name}: {outcome.fix}")
