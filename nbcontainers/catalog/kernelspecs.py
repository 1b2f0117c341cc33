"""Kernelspecs, one per catalog image (`nbc-<image>`), rendered and installed for Jupyter."""

from __future__ import annotations

import hashlib
import json
import struct
import tempfile
import zlib
from pathlib import Path
from typing import Any

from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
from jupyter_core.paths import SYSTEM_JUPYTER_PATH

from ..errors import ConfigError
from .entries import Catalog, CatalogImage

__all__ = [
    "install_kernelspecs",
    "installed_kernelspecs",
    "kernel_json",
    "remove_kernelspecs",
    "write_kernelspec",
]

GENERATED = (
    "AUTO GENERATED from the image catalog by `nbcontainers kernelspec install` "
    "(the checkout's kernelspecs/ by `nbcontainers images regenerate`). DO NOT MANUALLY MODIFY."
)


def kernel_json(image: CatalogImage) -> dict[str, Any]:
    """The kernel.json for ``image``: it names the catalog image, never a raw image ref."""
    return {
        # "python3" is the image's interpreter: the provisioner runs argv as given, in the image.
        "argv": ["python3", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": image.display_name,
        "language": "python",
        # Signals need the container's pid; a message reaches the kernel whatever the engine.
        "interrupt_mode": "message",
        "env": {},
        "metadata": {
            "kernel_provisioner": {
                "provisioner_name": "nbcontainers",
                "config": {"image": image.name},
            },
            "debugger": True,  # ipykernel 6+ in every catalog image speaks the debug protocol
            "nbcontainers": {"generated": GENERATED, "ref": image.ref},
        },
    }


def _colour(name: str) -> tuple[int, int, int]:
    # A stable colour per image, so the picker's logos tell images apart at a glance.
    h = hashlib.sha256(name.encode()).digest()
    return 40 + h[0] % 150, 60 + h[1] % 140, 120 + h[2] % 120


def _png(size: int, rgb: tuple[int, int, int]) -> bytes:
    """A small logo: a container box (filled square with a light band) as a PNG.

    Written by hand (RGBA, one zlib stream) so that no imaging library is a dependency.
    """
    rows = []
    band = range(size * 3 // 8, size * 5 // 8)
    edge = max(1, size // 16)
    for y in range(size):
        row = bytearray([0])  # filter type: none
        for x in range(size):
            inside = edge <= x < size - edge and edge <= y < size - edge
            if not inside:
                row += bytes((0, 0, 0, 0))
            elif y in band:
                row += bytes((250, 250, 250, 255))
            else:
                row += bytes((*rgb, 255))
        rows.append(bytes(row))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"".join(rows), 9))
        + chunk(b"IEND", b"")
    )


def _svg(rgb: tuple[int, int, int]) -> str:
    fill = "#{:02x}{:02x}{:02x}".format(*rgb)
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64">'
        f'<rect x="4" y="4" width="56" height="56" rx="6" fill="{fill}"/>'
        '<rect x="4" y="24" width="56" height="16" fill="#fafafa"/></svg>\n'
    )


def write_kernelspec(image: CatalogImage, folder: Path) -> Path:
    """Write ``nbc-<image>/`` (kernel.json and logos) under ``folder``; return its path."""
    target = folder / image.kernel_name
    target.mkdir(parents=True, exist_ok=True)
    (target / "kernel.json").write_text(json.dumps(kernel_json(image), indent=1) + "\n")
    rgb = _colour(image.name)
    (target / "logo-32x32.png").write_bytes(_png(32, rgb))
    (target / "logo-64x64.png").write_bytes(_png(64, rgb))
    (target / "logo-svg.svg").write_text(_svg(rgb))
    return target


def install_kernelspecs(
    catalog: Catalog,
    names: list[str] | None = None,
    *,
    user: bool = True,
    prefix: str | None = None,
    replace: bool = False,
) -> dict[str, str]:
    """Install kernelspecs for ``names`` (default: every catalog image); return name -> path.

    An installed nbcontainers kernelspec of the same name is updated; a kernelspec of that name
    that some other tool installed is only overwritten with ``replace``.
    """
    manager = KernelSpecManager()
    chosen = [catalog[n] for n in names] if names else list(catalog.values())
    if prefix is not None:
        folder = Path(prefix).absolute() / "share" / "jupyter" / "kernels"
    elif user:
        folder = Path(manager.user_kernel_dir)
    else:
        folder = Path(SYSTEM_JUPYTER_PATH[0]) / "kernels"
    if not replace:
        for image in chosen:
            existing = folder / image.kernel_name / "kernel.json"
            if existing.is_file() and not _is_ours(existing):
                raise ConfigError(
                    f"{existing.parent} holds a kernelspec that nbcontainers did not install. "
                    "Pass --replace to overwrite it."
                )
    installed = {}
    # Jupyter installs by copying a folder: render each spec into a scratch one first.
    with tempfile.TemporaryDirectory() as tmp:
        for image in chosen:
            source = write_kernelspec(image, Path(tmp))
            path = manager.install_kernel_spec(
                str(source), image.kernel_name, user=user and prefix is None, prefix=prefix
            )
            installed[image.kernel_name] = path
    return installed


def _is_ours(kernel_file: Path) -> bool:
    try:
        spec = json.loads(kernel_file.read_text())
    except (OSError, ValueError):
        return False
    provisioner = (spec.get("metadata") or {}).get("kernel_provisioner") or {}
    return bool(provisioner.get("provisioner_name") == "nbcontainers")


def installed_kernelspecs() -> dict[str, str]:
    """Installed nbcontainers kernelspecs: name -> resource directory."""
    manager = KernelSpecManager()
    found = {}
    for name, path in manager.find_kernel_specs().items():
        try:
            spec = manager.get_kernel_spec(name)
        except (NoSuchKernel, ValueError, OSError):
            continue  # someone else's broken kernelspec is not ours to report
        provisioner = (spec.metadata or {}).get("kernel_provisioner", {})
        if provisioner.get("provisioner_name") == "nbcontainers":
            found[name] = path
    return found


def remove_kernelspecs(names: list[str] | None = None) -> list[str]:
    """Remove installed nbcontainers kernelspecs (``names``, or all); return those removed.
    Kernelspecs of other provisioners are never touched, even when named."""
    manager = KernelSpecManager()
    removed = []
    for name in installed_kernelspecs():
        if names is None or name in names:
            manager.remove_kernel_spec(name)
            removed.append(name)
    return removed
