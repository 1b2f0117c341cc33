"""`--verify` and `%container use ./DIR`: a snapshot folder as a catalog image, what an image
has installed, and how a rebuild's package set differs from the live one."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from ..catalog.entries import CatalogImage
from ..errors import SnapshotError
from ..recipe.capture import capture_source, parse_capture
from ..recipe.dockerfile import DEFAULT_BASE
from ..recipe.environment import Snapshot
from ..recipe.lock import SYSTEM_DISTS
from ..recipe.redact import redact
from ..runtimes.base import BuildCallback, ContainerRuntime

__all__ = ["build_and_verify", "compare_packages", "image_packages", "snapshot_image"]


def compare_packages(live: Snapshot, rebuilt: Snapshot) -> list[str]:
    """Differences between two package sets (system packages aside), as readable lines."""

    # System packages and pip's tooling come with the base image, not from the lock.
    def pins(snap: Snapshot) -> dict[str, str]:
        return {
            p.key: p.version
            for p in snap.packages
            if p.kind != "system" and p.key not in SYSTEM_DISTS
        }

    a, b = pins(live), pins(rebuilt)
    lines = [f"missing in rebuild: {k}=={a[k]}" for k in sorted(a.keys() - b.keys())]
    lines += [f"extra in rebuild: {k}=={b[k]}" for k in sorted(b.keys() - a.keys())]
    lines += [
        f"version differs: {k} live {a[k]} rebuilt {b[k]}"
        for k in sorted(a.keys() & b.keys())
        if a[k] != b[k]
    ]
    return lines


def image_packages(runtime: ContainerRuntime, ref: str) -> Snapshot:
    """Capture what an image has installed (Python distributions, apt packages)."""
    from ..runtimes.base import ContainerSpec

    marker = "@@nbcontainers-capture@@"
    cid = runtime.run(
        ContainerSpec(
            image=ref,
            command=("python3", "-c", capture_source() + f"\nprint({marker!r} + __nbc_capture())"),
            network_mode="none",  # reading what is installed needs no network
        )
    )
    try:
        code = runtime.wait(cid, timeout=120)
        # All of it: the engine splits long lines (16 KiB) into several log entries.
        output = runtime.logs(cid, tail=1_000_000)
    finally:
        runtime.remove(cid)
    if code != 0 or marker not in output:
        raise SnapshotError(f"Could not inspect image {ref} (exit {code}): {redact(output[-500:])}")
    return parse_capture(output.split(marker, 1)[1].replace("\n", ""))


def snapshot_image(folder: Path) -> CatalogImage:
    """The catalog entry that builds a snapshot folder, named ``snapshot-<folder name>``."""
    from ..catalog.entries import source_hash

    name = "snapshot-" + re.sub(r"[^a-z0-9._-]", "-", folder.name.lower())
    return CatalogImage(
        name=name,
        ref=f"nbcontainers/{name}:{source_hash(folder)}",
        display_name=f"Snapshot {folder.name} (container)",
        base=DEFAULT_BASE,
        source=folder,
        user_defined=True,
    )


def build_and_verify(
    folder: Path,
    live: Snapshot,
    runtime: ContainerRuntime,
    on_line: Callable[[str], None] | None = None,
    on_event: BuildCallback | None = None,
) -> tuple[str, list[str]]:
    """Build the snapshot folder, start the image, compare its packages with ``live``.

    Returns (image ref, differences); no differences means the rebuild matches.
    """
    from ..catalog.build import build_image

    image = snapshot_image(folder)
    # pip's log lines may quote a URL it fetched; what the user sees is redacted like the rest.
    said = (lambda line: on_line(redact(line))) if on_line is not None else None
    build_image(image, runtime, on_line=said, on_event=on_event)
    rebuilt = image_packages(runtime, image.ref)
    return image.ref, compare_packages(live, rebuilt)
