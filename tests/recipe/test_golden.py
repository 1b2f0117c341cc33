"""Rendered Dockerfiles and locks, byte for byte against golden files (see golden/README.md):
snapshots and serving exports, with and without hashes, wheels, conda and PyTorch labels."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from nbcontainers.recipe.environment import Package, Snapshot
from nbcontainers.serving.lock import plan_lock
from nbcontainers.serving.render import ExportPlan, render_dockerfile
from nbcontainers.snapshot import write_snapshot

GOLDEN = Path(__file__).with_name("golden")


def check(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("NBC_UPDATE_GOLDEN"):
        path.write_text(text)
    assert path.read_text() == text, f"{name} differs; NBC_UPDATE_GOLDEN=1 rewrites it"


def without_time(text: str) -> str:
    return re.sub(r'(created"?[=:] ?")[^"]+', r"\1X", text)


SNAP = Snapshot(
    python="3.11.2",
    packages=(
        Package("numpy", "2.0.0", "index", top_level=("numpy",)),
        Package("pip", "24.0", "index"),
        Package("setuptools", "70", "index"),
        Package("torch", "2.3.0+cpu", "index", requires=("numpy",), top_level=("torch",)),
        Package("six", "1.17.0", "conda", source="conda-forge::six=1.17.0=py_0"),
        Package("mylib", "0.1", "editable", source="file:///src/mylib"),
        Package("sysdist", "1", "system"),
    ),
    image="python",
    apt=("libc6=2.36", "curl=7.88"),
    modules=("numpy", "torch"),
)
HASHES = {
    ("numpy", "2.0.0"): ["a" * 64],
    ("torch", "2.3.0+cpu"): ["b" * 64, "c" * 64],
    ("six", "1.17.0"): ["d" * 64],
    ("pip", "24.0"): ["e" * 64],
}


@pytest.fixture
def wheel(tmp_path: Path) -> Path:
    path = tmp_path / "mylib-0.1-py3-none-any.whl"
    path.write_bytes(b"wheel")
    return path


def test_snapshot_with_hashes_wheels_conda_apt_and_a_pytorch_label(
    tmp_path: Path, wheel: Path
) -> None:
    folder = write_snapshot(
        SNAP, tmp_path / "s", wheels={"mylib": wheel}, apt_base={"libc6=2.36"}, hashes=HASHES
    )
    check("snapshot-full.Dockerfile", (folder / "Dockerfile").read_text())
    check("snapshot-full.lock", (folder / "requirements.lock").read_text())


def test_minimal_snapshot_without_hashes(tmp_path: Path, wheel: Path) -> None:
    folder = write_snapshot(SNAP, tmp_path / "s", minimal=True, wheels={"mylib": wheel}, hashes={})
    check("snapshot-minimal.Dockerfile", (folder / "Dockerfile").read_text())
    check("snapshot-minimal.lock", (folder / "requirements.lock").read_text())


def test_snapshot_of_vcs_and_url_installs(tmp_path: Path) -> None:
    snap = Snapshot(
        python="3.12.1",
        packages=(
            Package("numpy", "2.0.0", "index"),
            Package("pkg", "1.0", "vcs", source="git+https://x/y@abc"),
            Package("u", "2", "url", source="https://h/u-2.tar.gz#sha256=" + "f" * 64),
        ),
    )
    folder = write_snapshot(snap, tmp_path / "s", hashes={})
    check("snapshot-py312.Dockerfile", (folder / "Dockerfile").read_text())
    check("snapshot-py312.lock", (folder / "requirements.lock").read_text())


def test_export_locks_and_dockerfiles(monkeypatch: pytest.MonkeyPatch) -> None:
    import nbcontainers.recipe.hashes

    monkeypatch.setattr(
        nbcontainers.recipe.hashes,
        "published_hashes",
        lambda pins, settings: {p: (["9" * 64] if p[0] == "numpy" else []) for p in pins},
    )
    snap = Snapshot(
        python="3.11",
        packages=(
            Package("numpy", "2.0.0", "index"),
            Package("scikit-learn", "1.5", "index", requires=("numpy", "scipy")),
            Package("scipy", "1.13", "index", requires=("numpy",)),
            Package("torch", "2.3.0", "index", requires=("numpy", "triton")),
            Package("triton", "3", "index"),
        ),
    )
    sklearn_lock, extra = plan_lock(snap, ["scikit-learn"], gpu=False)
    check("export-sklearn.lock", sklearn_lock + f"# extra: {extra}\n")
    torch_lock, torch_extra = plan_lock(snap, ["torch"], gpu=False)
    check("export-torch-cpu.lock", torch_lock + f"# extra: {torch_extra}\n")
    debian = ExportPlan(
        name="clf",
        image="nbcontainers/serving-clf:abc",
        meta={"kind": "sklearn", "format": "skops", "gpu": False},
        lock=sklearn_lock,
        base="debian:bookworm-slim@sha256:" + "1" * 64,
        python="3.11",
        source="nb.ipynb",
    )
    check("export-debian.Dockerfile", without_time(render_dockerfile(debian, "0.1.0")))
    slim = ExportPlan(
        name="net",
        image="r/net:1",
        meta={"kind": "torch", "format": "safetensors", "gpu": True},
        lock=torch_lock,
        base="python:3.12-slim-bookworm",
        python="3.12",
        extra_index=torch_extra,
    )
    check("export-slim.Dockerfile", without_time(render_dockerfile(slim, "0.2.0")))
