"""The built wheel works outside the checkout: catalog, image sources and kernelspecs come
from package data, as in a hub's user environment or a pipx install."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from this checkout, unpacked into a folder of its own."""
    wheels = tmp_path_factory.mktemp("wheels")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(CHECKOUT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("nbcontainers-*.whl")
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    return target


def _run(site: Path, cwd: Path, *code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("NBCONTAINERS_IMAGES_DIR", None)
    return subprocess.run(
        [sys.executable, "-c", "\n".join(code)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_wheel_carries_the_catalog(installed: Path, tmp_path: Path) -> None:
    done = _run(
        installed,
        tmp_path,
        "import json, nbcontainers",
        "from nbcontainers.catalog.entries import load_catalog, images_dir",
        "cat = load_catalog(include_user=False)",
        "print(json.dumps({'file': nbcontainers.__file__, 'dir': str(images_dir()),",
        "  'images': sorted(cat), 'buildable': [i.name for i in cat.values() if i.buildable]}))",
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["file"].startswith(str(installed)), "the checkout's package was imported instead"
    assert seen["dir"].startswith(str(installed))
    assert seen["images"] == ["python", "pytorch-cpu", "pytorch-gpu"]
    assert seen["buildable"] == seen["images"]  # Dockerfiles and locks are in the wheel too


def test_the_wheel_installs_kernelspecs(installed: Path, tmp_path: Path) -> None:
    done = _run(
        installed,
        tmp_path,
        "from nbcontainers.cli import main",
        "import sys",
        f"sys.argv = ['nbcontainers', 'kernelspec', 'install', '--prefix', {str(tmp_path)!r}]",
        "main()",
    )
    assert done.returncode == 0, done.stderr
    spec = json.loads((tmp_path / "share/jupyter/kernels/nbc-python/kernel.json").read_text())
    assert spec["metadata"]["kernel_provisioner"]["provisioner_name"] == "nbcontainers"
    assert (tmp_path / "share/jupyter/kernels/nbc-python/logo-64x64.png").is_file()
