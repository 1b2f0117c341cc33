"""The requirements lock: which distributions an image gets (closure, pins) and its text.

Snapshots lock everything the kernel had (or, with ``--minimal``, what its imports need);
serving exports lock what the model needs plus the server's pins. Both render the same way:
exact pins, with ``--hash`` lines on every entry or on none, because pip's hash mode is all or
nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from ..catalog.entries import canonical_name
from .environment import Package, Snapshot
from .redact import redact

__all__ = [
    "FROM_INDEX",
    "SYSTEM_DISTS",
    "WHEELS_IN_IMAGE",
    "dependency_closure",
    "index_pins",
    "is_pytorch_label",
    "line_hashes",
    "local_labels",
    "lock_line",
    "lockable",
    "minimal_packages",
    "pytorch_index",
    "read_lock",
    "render_lock",
    "requirement_names",
]

# Installed by the Dockerfile's system layer (or the venv), not from the lock.
SYSTEM_DISTS = frozenset({"pip", "setuptools", "wheel"})
# Pinned by version from pip's index: conda's own packages are rebuilt from their index twin.
FROM_INDEX = ("index", "conda")
# Where wheels vendored into a snapshot folder sit in the image (snapshot Dockerfile: COPY).
WHEELS_IN_IMAGE = "/opt/nbc/wheels"


def requirement_names(requires: Iterable[str]) -> list[str]:
    """Canonical names a distribution's ``Requires-Dist`` lines name, extras left out."""
    names = []
    for req in requires:
        if "extra ==" in req:
            continue  # optional extras were not necessarily installed
        match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", req)
        if match:
            names.append(canonical_name(match.group(0)))
    return names


def dependency_closure(snap: Snapshot, roots: Iterable[str]) -> list[Package]:
    """The distributions named in ``roots`` and everything they require, in snapshot order."""
    by_key = {p.key: p for p in snap.packages}
    wanted = [canonical_name(r) for r in roots]
    keep: set[str] = set()
    while wanted:
        key = wanted.pop()
        if key in keep or key not in by_key:
            continue
        keep.add(key)
        wanted.extend(requirement_names(by_key[key].requires))
    return [p for p in snap.packages if p.key in keep]


def minimal_packages(snap: Snapshot) -> list[Package]:
    """The distributions whose modules the session imported, and everything they require."""
    imported = set(snap.modules)
    return dependency_closure(
        snap,
        [
            p.key
            for p in snap.packages
            if set(p.top_level) & imported or p.key.replace("-", "_") in imported
        ],
    )


def lockable(packages: Iterable[Package]) -> list[Package]:
    """What a lock lists: neither the interpreter's own packages nor pip's tooling."""
    return [p for p in packages if p.kind != "system" and p.key not in SYSTEM_DISTS]


def index_pins(packages: Iterable[Package]) -> list[tuple[str, str]]:
    """(name, version) of the lockable distributions pip's index pins by version."""
    return [
        (p.name, p.version) for p in packages if p.kind in FROM_INDEX and p.key not in SYSTEM_DISTS
    ]


def local_labels(lock: Iterable[Package]) -> list[str]:
    """The local version labels (``+cpu``, ``+cu121``) in ``lock``, sorted."""
    return sorted({p.version.split("+", 1)[1] for p in lock if "+" in p.version})


def is_pytorch_label(label: str) -> bool:
    """Whether a local version label is one of PyTorch's builds (its own index serves them)."""
    return label == "cpu" or label.startswith("cu")


def pytorch_index(label: str) -> str:
    """PyTorch's index for one build label: the extra index such a lock needs."""
    return f"https://download.pytorch.org/whl/{label}"


def line_hashes(
    lock: Sequence[Package],
    hashes: Mapping[tuple[str, str], list[str]],
    wheel_files: Mapping[str, Path] | None = None,
) -> dict[str, list[str]] | None:
    """sha256 hashes for every lock line, or None: pip's hash mode is all or nothing.

    ``wheel_files`` maps keys of vendored distributions to their wheel (hashed here);
    ``hashes`` maps (name, version) to what the index published.
    """
    from .hashes import file_sha256

    wheel_files = wheel_files or {}
    result = {}
    # Where a line's hashes come from: the vendored wheel itself, the URL's own fragment,
    # or the index; a local or VCS install has none, and then no line may have any.
    for p in lock:
        if p.key in wheel_files:
            found = [file_sha256(wheel_files[p.key])]
        elif p.kind == "url" and "#sha256=" in p.source:
            found = [p.source.split("#sha256=", 1)[1]]
        elif p.kind in FROM_INDEX:
            found = list(hashes.get((p.name, p.version), []))
        else:
            found = []
        if not found:
            return None
        result[p.key] = found
    return result


def lock_line(p: Package, wheel: str | None, hashes: Sequence[str]) -> str:
    """One requirement: a vendored wheel, a VCS or archive URL, or ``name==version``."""
    if wheel:
        line = f"{p.name} @ file://{WHEELS_IN_IMAGE}/{wheel}"
    elif p.kind in ("vcs", "url"):
        # With hashes pip checks the archive itself; the URL's own #sha256 would repeat it.
        line = f"{p.name} @ {p.source.split('#', 1)[0] if hashes else p.source}"
    else:
        line = f"{p.name}=={p.version}"
    return line + "".join(f" \\\n    --hash=sha256:{h}" for h in hashes)


def render_lock(
    lock: Sequence[Package],
    hashes: Mapping[tuple[str, str], list[str]],
    header: Sequence[str],
    *,
    wheel_files: Mapping[str, Path] | None = None,
    no_hash_reason: str = "",
) -> str:
    """The lock's text: ``header`` comment lines, a line saying whether pip installs in hash
    mode (and, if not, ``no_hash_reason``), then one requirement per distribution; credentials
    in its URLs redacted (:func:`~nbcontainers.recipe.redact.redact`)."""
    wheel_files = wheel_files or {}
    found = line_hashes(lock, hashes, wheel_files)
    lines = list(header)
    if found is None:
        reason = f" ({no_hash_reason})" if no_hash_reason else ""
        lines.append(f"# no hash lines: not every distribution has a published hash{reason}")
    else:
        lines.append("# every line carries its files' sha256: pip installs in hash mode")
    for p in lock:
        wheel = wheel_files[p.key].name if p.key in wheel_files else None
        lines.append(lock_line(p, wheel, (found or {}).get(p.key, [])))
    # The lock is copied into the image: a presigned URL's signature or an index token in a
    # source URL must not be (the --hash lines still pin the very file).
    return redact("\n".join(lines) + "\n")


def read_lock(text: str) -> tuple[list[Package], dict[tuple[str, str], list[str]]]:
    """The pins of a pip-compile lock (``name==version`` lines and their ``--hash`` lines),
    as index packages and (name, version) -> hashes."""
    packages: list[Package] = []
    hashes: dict[tuple[str, str], list[str]] = {}
    current: Package | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith(("#", "--")) and "==" in line:
            name, version = line.split(" ", 1)[0].split("==", 1)
            current = Package(name=name, version=version, kind="index")
            packages.append(current)
            hashes[(name, version)] = []
        # A hash line belongs to the pin above it (pip-compile writes them continued).
        if current is not None and "--hash=sha256:" in line:
            hashes[(current.name, current.version)].append(
                line.split("--hash=sha256:", 1)[1].split()[0]
            )
    return packages, hashes
