"""Published sha256 hashes of pinned distributions, so a snapshot's lock can demand them.

Asks pip's index through the JSON simple API (PEP 691, what PyPI and current mirrors serve),
and hashes local wheels from the host's find-links for versions no index here serves (e.g.
torch ``+cpu``).
"""

from __future__ import annotations

import hashlib
import json
import ssl
import urllib.request
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..catalog.entries import canonical_name
from ..pipsettings import PipSettings

__all__ = ["file_sha256", "published_hashes"]

DEFAULT_INDEX = "https://pypi.org/simple"
ACCEPT = "application/vnd.pypi.simple.v1+json"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _file_version(filename: str) -> str:
    # Wheel names split on dashes (PEP 427); an sdist's version is after its last dash.
    if filename.endswith(".whl"):
        return filename.split("-")[1]
    for ext in (".tar.gz", ".zip", ".tar.bz2"):
        if filename.endswith(ext):
            return filename[: -len(ext)].rsplit("-", 1)[-1]
    return ""


def _from_index(index: str, name: str, version: str, context: ssl.SSLContext) -> list[str]:
    project = canonical_name(name)
    request = urllib.request.Request(f"{index.rstrip('/')}/{project}/", headers={"Accept": ACCEPT})
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as resp:
            data = json.load(resp)
    except (OSError, ValueError):
        return []
    return sorted(
        {
            f["hashes"]["sha256"]
            for f in data.get("files", [])
            if f.get("hashes", {}).get("sha256") and _file_version(f["filename"]) == version
        }
    )


def _from_find_links(name: str, version: str, settings: PipSettings) -> list[str]:
    stem = name.replace("-", "_").lower()
    # Hashed here: find-links folders publish no hashes of their own.
    return sorted(
        file_sha256(wheel)
        for folder in settings.local_find_links()
        for wheel in folder.glob("*.whl")
        if wheel.name.lower().startswith(f"{stem}-{version.lower()}-")
    )


def published_hashes(
    pins: Iterable[tuple[str, str]], settings: PipSettings
) -> dict[tuple[str, str], list[str]]:
    """(name, version) -> sha256 hashes of its files; an empty list where none was found."""
    pins = list(pins)
    index = settings.index_url or DEFAULT_INDEX
    # Indexes with credentials in the URL are not asked (the lock then has no hashes).
    remote = index.startswith("https://") and "@" not in index.split("/")[2]
    context = (
        ssl.create_default_context(cafile=settings.cert)
        if settings.cert
        else (ssl.create_default_context())
    )

    def one(pin: tuple[str, str]) -> list[str]:
        name, version = pin
        found = _from_index(index, name, version, context) if remote and "+" not in version else []
        return found or _from_find_links(name, version, settings)

    # One request per distribution, in parallel: a lock of 200 pins should not take minutes.
    with ThreadPoolExecutor(max_workers=16) as pool:
        return dict(zip(pins, pool.map(one, pins), strict=True))
