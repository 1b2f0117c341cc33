"""Snapshot a live kernel: capture it, have its own pip build or download the wheels the
folder vendors, look up hashes, and write the folder.

Runs with any ``evaluate(code, expression)``: the notebook's own kernel (`%container
snapshot`) or one reached by its connection file (`nbcontainers snapshot --kernel`).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from ..catalog.entries import canonical_name
from ..errors import SnapshotError
from ..evaluate import Evaluate, kernel_evaluator
from ..recipe.capture import capture_kernel
from ..recipe.dockerfile import DEFAULT_BASE
from ..recipe.environment import Snapshot
from ..recipe.lock import index_pins, minimal_packages
from ..recipe.redact import redact
from ..runtimes.base import ContainerRuntime
from ..sources import bundle, call_in_kernel
from ..untrusted import copy_left_file, kernel_owners
from .folder import check_target, write_snapshot
from .verify import image_packages

__all__ = ["lookup_hashes", "snapshot_kernel", "take_snapshot"]


@lru_cache(maxsize=1)
def _wheels_source() -> str:
    folder = Path(__file__).parent.parent / "inkernel"
    return bundle(folder, ["wheels"], "Wheels made by the kernel's own pip (nbcontainers).")


def lookup_hashes(snap: Snapshot, minimal: bool = False) -> dict[tuple[str, str], list[str]]:
    """Published file hashes for the distributions the lock pins from the index (see
    ``recipe/hashes.py``); with ``minimal``, only for those a ``--minimal`` lock keeps."""
    from ..pipsettings import read_pip_settings
    from ..recipe.hashes import published_hashes

    packages = minimal_packages(snap) if minimal else snap.packages
    return published_hashes(index_pins(packages), read_pip_settings())


def take_snapshot(
    evaluate: Evaluate,
    folder: Path,
    *,
    wheel_dir: str,
    minimal: bool = False,
    image_ref: str | None = None,
    runtime: ContainerRuntime | None = None,
    base: str = DEFAULT_BASE,
    vendor_all: bool = False,
) -> tuple[Path, Snapshot]:
    """Capture a live kernel and write its snapshot folder.

    ``evaluate(code, expression)`` runs ``code`` in the kernel and returns the value of
    ``expression`` there. Local and editable installs are built into wheels (in
    ``wheel_dir``, which the kernel can write) and vendored; ``image_ref`` (the catalog image
    the kernel runs in) gives the apt baseline for the system layer. ``vendor_all`` also
    downloads every other distribution's file, so the folder builds with no index at all.
    """
    check_target(folder)  # before the capture: a wrong folder fails in a second, not minutes
    snap = capture_kernel(evaluate)
    owners = kernel_owners(evaluate, wheel_dir)
    left: list[Path] = []
    private = Path(tempfile.mkdtemp(prefix="nbc-snapshot-wheels-"))
    try:
        wheels = _local_wheels(evaluate, snap, wheel_dir)
        if vendor_all:
            wheels.update(_download_all(evaluate, snap, wheel_dir, minimal))
        left = list(wheels.values())
        # From here on only our private copies are read: the shared folder is the kernel's
        # (and, in the temp folder, any local user's) to change under us.
        wheels = _adopt(wheels, owners, private)
        apt_base = set(image_packages(runtime, image_ref).apt) if image_ref and runtime else None
        hashes = lookup_hashes(snap, minimal)
        project = Path(str(snap.facts.get("cwd") or "")) if snap.facts.get("cwd") else None
        written = write_snapshot(
            snap,
            folder,
            minimal=minimal,
            wheels=wheels,
            project=project if project and project.is_dir() else None,
            base=base,
            apt_base=apt_base,
            hashes=hashes,
        )
    finally:
        # The folder has its copies; the shared folder may be the user's workspace.
        for wheel in left:
            wheel.unlink(missing_ok=True)
        shutil.rmtree(Path(wheel_dir) / "all", ignore_errors=True)
        shutil.rmtree(private, ignore_errors=True)
    return written, snap


def _adopt(files: dict[str, Path], owners: frozenset[int], into: Path) -> dict[str, Path]:
    """Private copies of the files the kernel left (key -> copy), see ``untrusted.py``."""
    adopted: dict[str, Path] = {}
    for number, (key, path) in enumerate(files.items()):
        target = into / str(number) / path.name  # one folder each: two keys, one file name
        target.parent.mkdir()
        copy_left_file(path, target, owners, SnapshotError)
        adopted[key] = target
    return adopted


def _local_wheels(evaluate: Evaluate, snap: Snapshot, wheel_dir: str) -> dict[str, Path]:
    """Wheels of the local and editable installs the kernel's pip could still build."""
    wheels: dict[str, Path] = {}
    for p in snap.packages:
        if p.kind not in ("local", "editable"):
            continue
        # The kernel builds it: the source folder is on the kernel's side of any mount.
        path = urlsplit(p.source).path if p.source.startswith("file:") else p.source
        if call_in_kernel(evaluate, _wheels_source(), "build_wheel", path, wheel_dir) == 0:
            stem = re.sub(r"[-_.]+", "_", p.name).lower()
            built = [
                w
                for w in Path(wheel_dir).glob("*.whl")
                if w.name.lower().startswith(f"{stem}-{p.version.lower()}")
            ]
            if built:
                wheels[p.key] = built[0]
    return wheels


def _download_all(
    evaluate: Evaluate, snap: Snapshot, wheel_dir: str, minimal: bool
) -> dict[str, Path]:
    """Have the kernel's own pip download every pinned distribution (its platform, its pip
    settings) into ``wheel_dir``; return key -> file."""
    packages = minimal_packages(snap) if minimal else list(snap.packages)
    pins = [f"{name}=={version}" for name, version in index_pins(packages)]
    dest = Path(wheel_dir) / "all"
    try:
        # Made here, never reused: in a shared folder a ready-made `all` (a link to one of
        # the user's folders) would have us write into and read from a place someone chose.
        dest.mkdir()
    except FileExistsError:
        raise SnapshotError(
            f"{dest} exists already: something other than this snapshot made it in the shared "
            "folder. Refused, nothing was written; snapshot again."
        ) from None
    pins_fd = os.open(
        dest / "pins.txt", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644
    )
    with os.fdopen(pins_fd, "w") as pins_file:
        pins_file.write("\n".join(pins) + "\n")
    code, err = call_in_kernel(
        evaluate, _wheels_source(), "download", str(dest), str(dest / "pins.txt")
    )
    if code != 0:
        raise SnapshotError(
            # pip's message may quote the URL it failed on: its credentials stay out of it.
            f"Could not download every distribution for --wheels: {redact(err.strip())}; "
            "nothing was written."
        )
    files: dict[str, Path] = {}
    for path in dest.iterdir():
        if path.suffix in (".whl", ".gz", ".zip"):
            # A wheel's name ends after its first dash; an sdist's version after its last.
            stem = path.name.split("-")[0] if path.suffix == ".whl" else path.name.rsplit("-", 1)[0]
            files[canonical_name(stem)] = path
    return files


def snapshot_kernel(
    connection: str, folder: Path, *, minimal: bool = False, timeout: float = 30
) -> tuple[Path, Snapshot]:
    """Snapshot a running kernel reached through its connection file (a path, a
    ``kernel-<id>.json`` name or a kernel id): what `nbcontainers snapshot --kernel` does.

    Works for local kernels and nbcontainers' container kernels (their catalog image gives the
    apt baseline, their workspace mount carries the wheels of local installs).
    """
    with kernel_evaluator(connection, timeout=timeout) as evaluate:
        # A container kernel says which catalog image it runs (the apt baseline) and where
        # its workspace is (the folder both sides can write).
        image, cwd = evaluate(
            "", "(__import__('os').environ.get('NBCONTAINERS_IMAGE'), __import__('os').getcwd())"
        )
        image_ref, runtime = None, None
        if image:
            from ..catalog.entries import load_catalog
            from ..runtimes import get_runtime

            entry = load_catalog().get(image)
            runtime = get_runtime()
            if entry is not None and runtime.image_info(entry.ref) is not None:
                image_ref = entry.ref
        wheel_dir = _shared_dir(evaluate, str(cwd))
        try:
            return take_snapshot(
                evaluate,
                folder,
                wheel_dir=wheel_dir,
                minimal=minimal,
                image_ref=image_ref,
                runtime=runtime,
            )
        finally:
            shutil.rmtree(wheel_dir, ignore_errors=True)


def _shared_dir(evaluate: Evaluate, kernel_cwd: str) -> str:
    """A new folder that this process and the kernel can both write: in the temp folder for a
    kernel on this machine, else in the kernel's working folder (a container kernel's
    workspace is mounted at the same path)."""
    for parent in (None, kernel_cwd):
        if parent is not None and not os.path.isdir(parent):
            continue
        try:
            path = tempfile.mkdtemp(prefix=".nbc-wheels-", dir=parent)
        except OSError:
            continue
        os.chmod(path, 0o1777)  # the container kernel may run as another user
        if evaluate("", f"__import__('os').access({path!r}, __import__('os').W_OK)"):
            return path
        shutil.rmtree(path, ignore_errors=True)
    # Not shared: local installs then can't be built into wheels, and say so when written.
    return tempfile.mkdtemp(prefix="nbc-wheels-")
