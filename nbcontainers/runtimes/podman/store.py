"""The shared read-only image store: one copy of the catalog images that every user's rootless
Podman reads through ``additionalimagestores`` in ``storage.conf``.

The admin (root) loads images from the system Docker engine into a Podman store of its own
(``podman --root STORE load``), makes it readable by all and names it in
``/etc/containers/storage.conf``; each user's engine then lists those images as read-only and
runs containers from them, writing only to the user's own storage. Users on native overlay
can't use a root-owned store (host root's files are unmapped in their namespace and overlay
doesn't copy them), so their own storage gets the images instead (``load_for_user``); which
driver a user has, or can have, is read here too. Engine commands here are
the Podman and Docker command lines (as root, on the admin's host), not a user's runtime: no
user engine is involved, and ``docker save`` / ``podman load`` have no seam method yet; it
lives in ``runtimes/`` because it is engine knowledge all the same.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

__all__ = [
    "DEFAULT_STORE",
    "HUB_MARK",
    "KNOWN_DRIVERS",
    "STORAGE_CONF",
    "SharedStore",
    "UserCommand",
    "add_store",
    "configured_stores",
    "drop_store",
    "load_for_user",
    "missing_image_message",
    "native_overlay_works",
    "user_image_id",
    "user_storage_conf",
    "user_storage_driver",
]

DEFAULT_STORE = Path("/var/lib/nbcontainers/storage")
STORAGE_CONF = Path("/etc/containers/storage.conf")
LOAD_TIMEOUT = 1800.0  # seconds for one `docker save | podman load` of a multi-GB image

ROOT_DEFAULTS = {"runroot": "/run/containers/storage", "graphroot": "/var/lib/containers/storage"}
# The first line of a user's storage.conf that `hub setup` wrote for native overlay (the
# user's engine keeps the catalog images in its own storage then, not in the shared store).
HUB_MARK = "# Written by nbcontainers hub setup"
_SECTION = re.compile(r"^\s*\[([^\]]+)\]\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z_]+)\s*=")


def user_storage_conf(env: dict[str, str] | None = None) -> Path:
    """The ``storage.conf`` a user's Podman reads: the user's own file where there is one (it
    replaces the system file entirely), else the system file."""
    env = dict(os.environ) if env is None else env
    home = env.get("HOME") or os.path.expanduser("~")
    for folder in (env.get("XDG_CONFIG_HOME"), os.path.join(home, ".config")):
        if folder and os.path.isfile(os.path.join(folder, "containers", "storage.conf")):
            return Path(folder, "containers", "storage.conf")
    return STORAGE_CONF


def _parse(text: str) -> dict[str, object]:
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib.loads(text)
    return {}  # pragma: no cover - Python 3.10 has no TOML reader; callers treat it as empty


def configured_stores(conf: Path | None = None) -> list[str]:
    """The ``additionalimagestores`` that ``conf`` (default: this user's) names."""
    path = conf or user_storage_conf()
    try:
        data = _parse(path.read_text())
    except (OSError, ValueError):
        return []
    storage = data.get("storage")
    return _stores_in(storage) if isinstance(storage, dict) else []


def missing_image_message(ref: str, kernel: str, conf: Path | None = None) -> str | None:
    """What a user reads when ``ref`` is in none of their engine's stores while a shared store
    is configured (the hub case); ``None`` where no shared store is set up."""
    path = conf or user_storage_conf()
    stores = configured_stores(path)
    if stores:
        return (
            f"Image {ref} for kernel {kernel!r} is not in your engine's storage nor in the shared "
            f"image store ({', '.join(stores)}). Ask your admin to run `nbcontainers hub setup` "
            "(it loads the catalog images into the shared store for every user)."
        )
    try:
        marked = path.read_text().startswith(HUB_MARK)
    except OSError:
        marked = False
    if not marked:
        return None
    return (
        f"Image {ref} for kernel {kernel!r} is not in your engine's storage (your admin's "
        "`nbcontainers hub setup` loads the catalog images there). Ask your admin to run "
        "`nbcontainers hub setup`."
    )


def _toml_list(items: Sequence[str]) -> str:
    return "[" + ", ".join(f'"{item}"' for item in items) + "]"


def add_store(text: str, store: str, driver: str, system: bool = True) -> str:
    """``storage.conf`` text with ``store`` in ``[storage.options] additionalimagestores`` and
    a ``driver`` set, keeping every other line (comments included) as it was.

    The file replaces Podman's built-in defaults as a whole, so a missing ``driver`` is set to
    the one users already have (changing it would strand their existing storage); the system
    file (``system``) also gets root's ``graphroot``/``runroot``, a user's file must not.
    """
    data = _parse(text) if text.strip() else {}
    storage = data.get("storage") if isinstance(data.get("storage"), dict) else {}
    assert isinstance(storage, dict)
    stores = _stores_in(storage)
    if store not in stores:
        stores.append(store)
    lines = text.splitlines()
    # Podman reads no defaults once this file exists: root's own engine needs all three.
    for key, value in {"driver": driver, **(ROOT_DEFAULTS if system else {})}.items():
        if storage.get(key):
            continue
        storage_at, keys_at, _ = _scan(lines)
        line = f'{key} = "{value}"'
        if key in keys_at:
            lines[keys_at[key]] = line  # present but empty
        elif storage_at is not None:
            lines.insert(storage_at + 1, line)
        else:
            lines[:0] = ["[storage]", line, ""]
    _, _, (options_at, stores_at) = _scan(lines)
    new_line = f"additionalimagestores = {_toml_list(stores)}"
    if stores_at is not None:
        # A multi-line array continues below: replace its continuation lines too.
        end = stores_at
        while "]" not in lines[end] and end + 1 < len(lines):
            end += 1
        lines[stores_at : end + 1] = [new_line]
    elif options_at is not None:
        lines.insert(options_at + 1, new_line)
    else:
        lines += ["", "[storage.options]", new_line]
    result = "\n".join(lines).lstrip("\n") + "\n"
    _parse(result)  # never write a file Podman can't read
    return result


def drop_store(text: str, store: str, driver: str) -> str:
    """A user's ``storage.conf`` text for ``driver`` without ``store`` in its
    ``additionalimagestores``, other lines kept; the :data:`HUB_MARK` line first."""
    data = _parse(text) if text.strip() else {}
    storage = data.get("storage") if isinstance(data.get("storage"), dict) else {}
    assert isinstance(storage, dict)
    lines = [line for line in text.splitlines() if line != HUB_MARK]
    storage_at, keys_at, (_, stores_at) = _scan(lines)
    if stores_at is not None:
        end = stores_at
        while "]" not in lines[end] and end + 1 < len(lines):
            end += 1
        kept = [s for s in _stores_in(storage) if s != store]
        lines[stores_at : end + 1] = [f"additionalimagestores = {_toml_list(kept)}"] if kept else []
        storage_at, keys_at, _ = _scan(lines)
    line = f'driver = "{driver}"'
    if "driver" in keys_at:
        lines[keys_at["driver"]] = line
    elif storage_at is not None:
        lines.insert(storage_at + 1, line)
    else:
        lines[:0] = ["[storage]", line]
    result = "\n".join([HUB_MARK, *lines]).rstrip("\n") + "\n"
    _parse(result)
    return result


def _scan(lines: list[str]) -> tuple[int | None, dict[str, int], tuple[int | None, int | None]]:
    """Where ``[storage]`` starts, its keys' lines, and ``[storage.options]`` and its
    ``additionalimagestores`` line."""
    section = None
    storage_at = options_at = stores_at = None
    keys_at: dict[str, int] = {}
    for i, line in enumerate(lines):
        head = _SECTION.match(line)
        if head:
            section = head.group(1).strip()
            storage_at = i if section == "storage" else storage_at
            options_at = i if section == "storage.options" else options_at
            continue
        key = _KEY.match(line)
        if key and section == "storage":
            keys_at[key.group(1)] = i
        if key and section == "storage.options" and key.group(1) == "additionalimagestores":
            stores_at = i
    return storage_at, keys_at, (options_at, stores_at)


def _stores_in(storage: dict[object, object]) -> list[str]:
    options = storage.get("options")
    stores = options.get("additionalimagestores") if isinstance(options, dict) else None
    return [str(s) for s in stores] if isinstance(stores, list) else []


class UserCommand(Protocol):
    """Runs a command as one user (``hub setup`` passes ``AsUser.run``: no terminal, a new
    session, root-owned engine configuration)."""

    def __call__(
        self, *command: str, timeout: float = ..., stdin: int | IO[bytes] | None = ...,
        check: bool = ...,
    ) -> subprocess.CompletedProcess[str]: ...  # fmt: skip


def native_overlay_works(run: UserCommand, scratch: Path) -> bool:
    """Whether rootless native overlay works on this kernel for the user ``run`` runs as:
    ``podman info`` on a throw-away store in ``scratch`` (a folder the user owns) reports
    "Native Overlay Diff: true"."""
    probe = run(
        "podman", "--storage-driver", "overlay", "--root", str(scratch / "root"),
        "--runroot", str(scratch / "run"), "info", "--format", "{{.Store.GraphStatus}}",
    )  # fmt: skip
    return probe.returncode == 0 and "Native Overlay Diff:true" in probe.stdout


KNOWN_DRIVERS = ("vfs", "overlay", "btrfs", "zfs")


def user_storage_driver(run: UserCommand, layer_dirs: Sequence[str]) -> str | None:
    """The storage driver of the user's existing rootless store, ``None`` when the user has
    none yet. ``layer_dirs`` are the ``<driver>-layers`` folders in the user's graph root
    (Podman makes one at a user's first command; changing the driver of a store that exists
    would hide its images, so callers keep it). Only a driver Podman knows is returned: the
    answer comes from a process the user controls."""
    if not layer_dirs:
        return None
    info = run("podman", "info", "--format", "{{.Store.GraphDriverName}}")
    said = info.stdout.strip()
    if info.returncode == 0 and said in KNOWN_DRIVERS:
        return said
    found = layer_dirs[0].removesuffix("-layers")
    return found if found in KNOWN_DRIVERS else None


def user_image_id(run: UserCommand, ref: str) -> str | None:
    """The id of ``ref`` in the user's engine (its own storage or a store it reads)."""
    done = run("podman", "image", "inspect", "--format", "{{.ID}}", ref, timeout=60)
    return done.stdout.strip() or None if done.returncode == 0 else None


def load_for_user(run: UserCommand, source_cli: str, ref: str) -> None:
    """Copy ``ref`` from the engine behind ``source_cli`` into the user's own storage."""
    saver = subprocess.Popen([source_cli, "save", ref], stdout=subprocess.PIPE,
                             stdin=subprocess.DEVNULL, cwd="/")  # fmt: skip
    try:
        assert saver.stdout is not None
        loaded = run("podman", "load", "-q", timeout=LOAD_TIMEOUT, stdin=saver.stdout)
    finally:
        if saver.stdout is not None:
            saver.stdout.close()
        saved = saver.wait(timeout=60)
    if saved != 0 or loaded.returncode != 0:
        raise RuntimeError(
            f"loading {ref} into the user's storage failed ({source_cli} save exited {saved}, "
            f"podman load exited {loaded.returncode}): {loaded.stderr.strip()[-800:]}"
        )


def _pipe(save: list[str], load: list[str], ref: str, where: object) -> None:
    saver = subprocess.Popen(save, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, cwd="/")
    try:
        loaded = subprocess.run(
            load,
            stdin=saver.stdout,
            capture_output=True,
            text=True,
            timeout=LOAD_TIMEOUT,
            check=False,
            cwd="/",
            start_new_session=True,
        )
    finally:
        if saver.stdout is not None:
            saver.stdout.close()
        saved = saver.wait(timeout=60)
    if saved != 0 or loaded.returncode != 0:
        raise RuntimeError(
            f"loading {ref} into {where} failed ({save[0]} save exited {saved}, "
            f"podman load exited {loaded.returncode}): {loaded.stderr.strip()[-800:]}"
        )


@dataclass(frozen=True)
class SharedStore:
    """A Podman image store at ``root`` that root writes and every user reads."""

    root: Path = DEFAULT_STORE
    driver: str = "vfs"
    runroot: Path = Path("/run/nbcontainers/storage")

    def _podman(self, *args: str) -> list[str]:
        podman = shutil.which("podman") or "podman"
        return [
            podman,
            "--root",
            str(self.root),
            "--runroot",
            str(self.runroot),
            "--storage-driver",
            self.driver,
            *args,
        ]

    def image_id(self, ref: str) -> str | None:
        """The image's id in this store, or ``None`` when it is not there."""
        done = subprocess.run(
            self._podman("image", "inspect", "--format", "{{.ID}}", ref),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return done.stdout.strip() or None if done.returncode == 0 else None

    def images(self) -> list[str]:
        done = subprocess.run(
            self._podman("images", "--format", "{{.Repository}}:{{.Tag}}"),
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return [line for line in done.stdout.splitlines() if line.strip()]

    def make_root(self) -> None:
        """Make the store's missing folders before Podman does (it makes them 0700, which
        stops users' engines): each missing parent 0755, the store itself 0700 until
        ``podman_seal.seal_store`` opens it to the hub's group. Folders that exist are left as
        they are: setup never widens a folder it did not make."""
        missing = [p for p in [self.root, *self.root.parents] if not p.exists()]
        for folder in reversed(missing):
            folder.mkdir(mode=0o700 if folder == self.root else 0o755)
            folder.chmod(0o700 if folder == self.root else 0o755)  # whatever the umask

    def load_from(self, source_cli: str, ref: str) -> None:
        """Copy ``ref`` from the engine behind ``source_cli`` (``docker save``) into the store."""
        self.make_root()
        _pipe([source_cli, "save", ref], self._podman("load", "-q"), ref, self.root)
        # Listing as root creates the store's images.lock and layers.lock: a user's engine
        # only opens them (it can't create files in the store) and fails on a fresh store.
        self.images()
