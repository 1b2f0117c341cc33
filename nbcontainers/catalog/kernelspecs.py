"""Kernelspecs, one per catalog image (`nbc-<image>`) and `nbc-notebook` (the image its
notebook declares), rendered and installed for Jupyter. Their argv runs the launcher, for
frontends that ignore kernel provisioners."""

from __future__ import annotations

import hashlib
import json
import struct
import sys
import tempfile
import zlib
from pathlib import Path
from typing import Any

from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
from jupyter_core.paths import SYSTEM_JUPYTER_PATH

from ..errors import ConfigError
from .entries import Catalog, CatalogImage

__all__ = [
    "NOTEBOOK_KERNEL",
    "install_kernelspecs",
    "installed_kernelspecs",
    "kernel_json",
    "notebook_kernel_json",
    "remove_kernelspecs",
    "write_kernelspec",
    "write_kernelspecs",
    "write_notebook_kernelspec",
]

GENERATED = (
    "AUTO GENERATED from the image catalog by `nbcontainers kernelspec install` "
    "(the checkout's kernelspecs/ by `nbcontainers images regenerate`). DO NOT MANUALLY MODIFY."
)


# The kernelspec whose image is whatever the notebook declares (kernels/declared.py).
NOTEBOOK_KERNEL = "nbc-notebook"
NOTEBOOK_IMAGE = "@notebook"
NOTEBOOK_DISPLAY_NAME = "Container (from this notebook)"
# What runs in the image: "python3" is the image's interpreter.
KERNEL_COMMAND = ["python3", "-m", "ipykernel_launcher", "-f", "{connection_file}"]


def kernel_json(image: CatalogImage, python: str = "python3") -> dict[str, Any]:
    """The kernel.json for ``image``: it names the catalog image, never a raw image ref."""
    spec = _spec(image.kernel_name, image.name, image.display_name, python)
    spec["metadata"]["nbcontainers"]["ref"] = image.ref
    return spec


def notebook_kernel_json(python: str = "python3") -> dict[str, Any]:
    """The kernel.json of ``nbc-notebook``: the image and resources its notebook declares."""
    return _spec(NOTEBOOK_KERNEL, NOTEBOOK_IMAGE, NOTEBOOK_DISPLAY_NAME, python)


def _spec(kernel_name: str, image: str, display_name: str, python: str) -> dict[str, Any]:
    return {
        # Frontends that ignore kernel provisioners (VS Code, Zed, nteract) run argv: the
        # launcher starts the same container kernel on the host's ``python`` (jupyter_client
        # swaps "python3" for its own interpreter; installs write the installer's path), and
        # runs the part after "--" in the image. The provisioner runs only that part.
        "argv": [
            python,
            "-m",
            "nbcontainers.launch",
            "--kernel",
            kernel_name,
            "--image",
            image,
            "-f",
            "{connection_file}",
            "--",
            *KERNEL_COMMAND,
        ],
        "display_name": display_name,
        "language": "python",
        # A message reaches the kernel however it was started, whatever the engine (a signal
        # would need the container's pid); the launcher passes on a SIGINT all the same.
        "interrupt_mode": "message",
        "env": {},
        "metadata": {
            "kernel_provisioner": {
                "provisioner_name": "nbcontainers",
                "config": {"image": image},
            },
            "debugger": True,  # ipykernel 6+ in every catalog image speaks the debug protocol
            "nbcontainers": {"generated": GENERATED},
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


def write_kernelspec(image: CatalogImage, folder: Path, python: str = "python3") -> Path:
    """Write ``nbc-<image>/`` (kernel.json and logos) under ``folder``; return its path."""
    return _write(folder, image.kernel_name, kernel_json(image, python), image.name)


def write_notebook_kernelspec(folder: Path, python: str = "python3") -> Path:
    """Write ``nbc-notebook/`` under ``folder``; return its path."""
    return _write(folder, NOTEBOOK_KERNEL, notebook_kernel_json(python), "notebook")


def write_kernelspecs(catalog: Catalog, folder: Path, python: str = "python3") -> list[Path]:
    """Write every catalog image's kernelspec and ``nbc-notebook`` under ``folder`` (what
    `nbcontainers images regenerate` writes to the checkout's kernelspecs/)."""
    written = [write_kernelspec(image, folder, python) for image in catalog.values()]
    return [*written, write_notebook_kernelspec(folder, python)]


def _write(folder: Path, kernel_name: str, spec: dict[str, Any], colour_of: str) -> Path:
    target = folder / kernel_name
    target.mkdir(parents=True, exist_ok=True)
    (target / "kernel.json").write_text(json.dumps(spec, indent=1) + "\n")
    rgb = _colour(colour_of)
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
    """Install kernelspecs for ``names`` (default: every catalog image, and ``nbc-notebook``);
    return name -> path. "notebook" (or "nbc-notebook") among ``names`` is ``nbc-notebook``.

    An installed nbcontainers kernelspec of the same name is updated; a kernelspec of that name
    that some other tool installed is only overwritten with ``replace``. The launcher in argv
    runs on this interpreter, which has nbcontainers.
    """
    manager = KernelSpecManager()
    wanted = list(names or [])
    notebook = not wanted or any(n in ("notebook", NOTEBOOK_KERNEL) for n in wanted)
    wanted = [n for n in wanted if n not in ("notebook", NOTEBOOK_KERNEL)]
    chosen = [catalog[n] for n in wanted] if wanted else ([] if names else list(catalog.values()))
    kernel_names = [image.kernel_name for image in chosen] + [NOTEBOOK_KERNEL] * notebook
    if prefix is not None:
        folder = Path(prefix).absolute() / "share" / "jupyter" / "kernels"
    elif user:
        folder = Path(manager.user_kernel_dir)
    else:
        folder = Path(SYSTEM_JUPYTER_PATH[0]) / "kernels"
    if not replace:
        for kernel_name in kernel_names:
            existing = folder / kernel_name / "kernel.json"
            if existing.is_file() and not _is_ours(existing):
                raise ConfigError(
                    f"{existing.parent} holds a kernelspec that nbcontainers did not install. "
                    "Pass --replace to overwrite it."
                )
    installed = {}
    # Jupyter installs by copying a folder: render each spec into a scratch one first.
    with tempfile.TemporaryDirectory() as tmp:
        sources = [write_kernelspec(image, Path(tmp), sys.executable) for image in chosen]
        if notebook:
            sources.append(write_notebook_kernelspec(Path(tmp), sys.executable))
        for source in sources:
            path = manager.install_kernel_spec(
                str(source), source.name, user=user and prefix is None, prefix=prefix
            )
            installed[source.name] = path
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
