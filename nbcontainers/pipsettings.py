"""The host's pip settings (index, find-links, CA bundle), read once and handed to containers.

Kernels get them as read-only mounts at run time and builds get them as BuildKit
secrets, so `%pip install` works wherever it works on the host and no credential
is ever written into an image layer.
"""

from __future__ import annotations

import configparser
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

__all__ = ["PipSettings", "read_pip_settings"]


@dataclass(frozen=True)
class PipSettings:
    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    cert: str | None = None
    trusted_hosts: tuple[str, ...] = ()

    def local_paths(self) -> list[str]:
        """Host files and folders these settings point at (to be mounted read-only)."""
        paths: list[str] = []
        indexes = {self.index_url, *self.extra_index_urls}
        for item in (self.index_url, *self.extra_index_urls, *self.find_links, self.cert):
            path = _local_path(item)
            if path and item in indexes and os.path.basename(path.rstrip("/")) == "simple":
                # A file:// simple index links to its files beside it (../../files/...).
                path = os.path.dirname(path.rstrip("/"))
            if path and os.path.exists(path) and path not in paths:
                paths.append(path)
        return paths

    def local_find_links(self) -> list[Path]:
        return [Path(p) for p in map(_local_path, self.find_links) if p and os.path.isdir(p)]

    def render(
        self,
        *,
        cert: str | None = None,
        find_links: tuple[str, ...] | None = None,
        remote_only: bool = False,
    ) -> str:
        """A pip.conf with these settings; ``remote_only`` drops file:// and local entries
        (used for builds, whose local wheels travel in the build context instead)."""

        def keep(url: str) -> bool:
            return not remote_only or _local_path(url) is None

        lines = ["[global]"]
        if self.index_url and keep(self.index_url):
            lines.append(f"index-url = {self.index_url}")
        extras = [u for u in self.extra_index_urls if keep(u)]
        if extras:
            lines.append("extra-index-url = " + "\n    ".join(extras))
        links = find_links if find_links is not None else tuple(filter(keep, self.find_links))
        if links:
            lines.append("find-links = " + "\n    ".join(links))
        chosen_cert = cert if cert is not None else self.cert
        if chosen_cert:
            lines.append(f"cert = {chosen_cert}")
        if self.trusted_hosts:
            lines.append("trusted-host = " + "\n    ".join(self.trusted_hosts))
        return "\n".join(lines) + "\n"


def _local_path(item: str | None) -> str | None:
    if not item:
        return None
    # pip takes both a file:// URL and a bare path for an index or find-links; anything else
    # with a scheme is remote and stays a URL (it travels as text, nothing to mount).
    if item.startswith("file://"):
        return unquote(urlparse(item).path)
    if "://" in item:
        return None
    return os.path.abspath(os.path.expanduser(item))


def _config_files(environ: Mapping[str, str]) -> list[Path]:
    home = Path(os.path.expanduser("~"))
    # pip's own order, lowest first, so that a later file wins in the merge below: site-wide
    # (XDG dirs, /etc), then the user's (legacy ~/.pip, then XDG), then the environment's.
    xdg_dirs = environ.get("XDG_CONFIG_DIRS", "/etc/xdg").split(os.pathsep)
    files = [Path(d) / "pip" / "pip.conf" for d in xdg_dirs] + [Path("/etc/pip.conf")]
    xdg_home = Path(environ.get("XDG_CONFIG_HOME") or home / ".config")
    files += [home / ".pip" / "pip.conf", xdg_home / "pip" / "pip.conf"]
    files.append(Path(sys.prefix) / "pip.conf")
    # PIP_CONFIG_FILE=/dev/null is pip's documented way to read no file at all; it is not a
    # file to parse (the merge then holds only what the other files and variables give).
    if environ.get("PIP_CONFIG_FILE") and environ["PIP_CONFIG_FILE"] != os.devnull:
        files.append(Path(environ["PIP_CONFIG_FILE"]))
    return files


def read_pip_settings(environ: Mapping[str, str] | None = None) -> PipSettings:
    """Merge pip's config files and PIP_* variables in pip's own order of precedence."""
    environ = os.environ if environ is None else environ
    values: dict[str, str] = {}
    for path in _config_files(environ):
        parser = configparser.RawConfigParser()
        try:
            parser.read(path)
        except (configparser.Error, OSError):
            continue  # pip skips a file it cannot read; a kernel must not fail where pip works
        # [install] overrides [global] for `pip install`, the only command kernels run.
        for section in ("global", "install"):
            if parser.has_section(section):
                values.update({k.replace("_", "-"): v for k, v in parser.items(section)})
    for key in ("index-url", "extra-index-url", "find-links", "cert", "trusted-host"):
        env_value = environ.get("PIP_" + key.upper().replace("-", "_"))
        if env_value:
            values[key] = env_value

    # pip splits multi-valued options on whitespace, newlines included (continuation lines).
    def many(key: str) -> tuple[str, ...]:
        return tuple(values.get(key, "").split())

    return PipSettings(
        index_url=values.get("index-url") or None,
        extra_index_urls=many("extra-index-url"),
        find_links=many("find-links"),
        cert=values.get("cert") or None,
        trusted_hosts=many("trusted-host"),
    )
