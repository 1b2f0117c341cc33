"""Podman's ``storage.conf``: which read-only image stores (``additionalimagestores``) a user's
engine reads, what the hub's setup writes there, and what a user reads when an image is in
none of them. Text in, text out: the files are read and written by the callers (as the user,
or by root without following links in users' homes).

The file replaces Podman's built-in defaults as a whole (Podman 4.x), so every edit keeps the
lines it did not write, comments included, and never writes a file Podman can't read.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "HUB_MARK",
    "STORAGE_CONF",
    "add_store",
    "configured_stores",
    "drop_store",
    "missing_image_message",
    "user_storage_conf",
]

STORAGE_CONF = Path("/etc/containers/storage.conf")
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
