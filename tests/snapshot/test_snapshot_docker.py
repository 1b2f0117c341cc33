"""`%container snapshot` against a real container kernel: the folder rebuilds to the same
package set (after a `%pip install`), local installs are vendored as wheels, secrets stay out,
and bad input changes nothing."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..drive import Frontend, container_kernel, notebook, run

pytestmark = pytest.mark.docker

TOKEN = "planted-token-4f2b9c"


@pytest.fixture
def frontend(
    python_image: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Frontend]:
    monkeypatch.setenv("MY_API_TOKEN", TOKEN)
    monkeypatch.setenv("NBCONTAINERS_CONFIG_DIR", str(tmp_path / "config"))
    (tmp_path / "analysis.py").write_text("print('analysis')\n")
    (tmp_path / ".env").write_text(f"MY_API_TOKEN={TOKEN}\n")
    with notebook(tmp_path) as fe:
        fe.text("%container use python")
        yield fe


def _make_local_package(root: Path) -> Path:
    pkg = root / "localpkg"
    (pkg / "localpkg").mkdir(parents=True)
    (pkg / "localpkg" / "__init__.py").write_text("VALUE = 41 + 1\n")
    (pkg / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "localpkg"\nversion = "0.0.1"\n'
    )
    return pkg


def test_snapshot_verify_build_and_use(frontend: Frontend, tmp_path: Path, runtime: Any) -> None:
    pkg = _make_local_package(tmp_path)
    frontend.text("%pip install --quiet tomli-w==1.0.0")
    frontend.text(f"%pip install --quiet {pkg}")
    frontend.text(f"import os; os.environ['ANOTHER_SECRET'] = '{TOKEN}'")
    out = frontend.text("%container snapshot env --build")
    assert "0 differences" in out and "Registered as image 'snapshot-env'" in out
    folder = tmp_path / "env"
    lock = (folder / "requirements.lock").read_text()
    assert "tomli_w==1.0.0" in lock or "tomli-w==1.0.0" in lock
    assert "localpkg @ file:///opt/nbc/wheels/localpkg-0.0.1" in lock
    # Every line is hashed (PyPI's published hashes; the vendored wheel's own), so the
    # verified rebuild above ran pip in hash-checking mode.
    assert lock.count("--hash=sha256:") >= lock.count("==")
    assert list((folder / "wheels").glob("localpkg-0.0.1-*.whl"))
    env = json.loads((folder / "environment.json").read_text())
    assert "%pip install --quiet tomli-w==1.0.0" in env["history"]
    kinds = {p["name"]: p["kind"] for p in env["packages"]}
    assert kinds["localpkg"] == "local" and kinds["numpy"] == "index"
    assert (folder / "project" / "analysis.py").is_file()
    assert not (folder / "project" / ".env").exists()
    leaked = subprocess.run(["grep", "-rl", TOKEN, str(folder)], capture_output=True, text=True)
    assert leaked.stdout == "", f"secret found in {leaked.stdout}"
    try:
        # The registered image runs as a container kernel with the vendored package.
        frontend.text("%container use snapshot-env")
        assert frontend.text("import localpkg, tomli_w; print(localpkg.VALUE)").strip() == "42"
        # ...and its image holds no secret either.
        history = subprocess.run(
            ["docker", "history", "--no-trunc", "nbcontainers/snapshot-env"],
            capture_output=True,
            text=True,
        )
        assert TOKEN not in history.stdout
        frontend.text("%container stop snapshot-env")
        # The path form: with its image gone, `%container use ./env` builds it again first.
        _remove_images(runtime, "nbcontainers/snapshot-env")
        out = frontend.text("%container use ./env")
        assert "Image snapshot-env (nbcontainers/snapshot-env:" in out
        assert "is not built yet: building it now" in out and "] RUN " in out  # its steps
        assert "Built nbcontainers/snapshot-env:" in out
        assert "Cells now run in container kernel 'snapshot-env'" in out
        assert frontend.text("import localpkg; print(localpkg.VALUE)").strip() == "42"
        # Built now: the next use starts it straight away.
        frontend.text("%container stop snapshot-env")
        out = frontend.text("%container use ./env")
        assert "Building" not in out and "'snapshot-env'" in out
        frontend.text("%container stop snapshot-env")
    finally:
        _remove_images(runtime, "nbcontainers/snapshot-env")


def _remove_images(runtime: Any, name: str) -> None:
    for image in runtime.api.images(name=name, quiet=True):
        runtime.api.remove_image(image, force=True)


def test_snapshot_refuses_bad_targets_and_unreproducible(
    frontend: Frontend, tmp_path: Path
) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "data.csv").write_text("1,2\n")
    content, outputs = frontend.run("%container snapshot precious")
    assert content["ename"] == "UsageError"
    assert "is not an nbcontainers snapshot" in "".join(str(m["content"]) for m in outputs)
    assert [p.name for p in precious.iterdir()] == ["data.csv"]
    content, outputs = frontend.run("%container use ./precious")
    said = "".join(str(m["content"]) for m in outputs)
    assert content["ename"] == "UsageError" and "is not a snapshot folder" in said
    pkg = _make_local_package(tmp_path / "gone")
    frontend.text(f"%pip install --quiet {pkg}")
    subprocess.run(["rm", "-rf", str(tmp_path / "gone")], check=True)
    content, outputs = frontend.run("%container snapshot env2")
    said = "".join(str(m["content"]) for m in outputs)
    assert content["ename"] == "UsageError" and "Cannot reproduce localpkg" in said
    assert not (tmp_path / "env2").exists()


def test_snapshot_with_wheels_builds_without_any_index(
    frontend: Frontend, tmp_path: Path, runtime: Any
) -> None:
    from nbcontainers.catalog.build import build_image
    from nbcontainers.pipsettings import PipSettings
    from nbcontainers.snapshot import image_packages, snapshot_image

    frontend.text("%pip install --quiet tomli-w==1.0.0")
    out = frontend.text("%container snapshot airgap --wheels")
    assert "written to" in out
    folder = tmp_path / "airgap"
    lock_lines = [
        ln
        for ln in (folder / "requirements.lock").read_text().splitlines()
        if ln and not ln.startswith(("#", " "))
    ]
    assert lock_lines and all(" @ file:///opt/nbc/wheels/" in ln for ln in lock_lines)
    image = snapshot_image(folder)
    # An index that answers nothing, and no find-links: only the vendored files can serve.
    dead = PipSettings(index_url="http://127.0.0.1:9/simple")
    try:
        build_image(image, runtime, settings=dead)
        rebuilt = image_packages(runtime, image.ref)
        env = json.loads((folder / "environment.json").read_text())
        recorded = {
            re.sub(r"[-_.]+", "-", p["name"]).lower(): p["version"]
            for p in env["packages"]
            if p["kind"] == "index" and p["name"] not in ("pip", "setuptools", "wheel")
        }
        # Installed from the vendored files, so their kind there is "url"/"local".
        got = {p.key: p.version for p in rebuilt.packages if p.kind != "system"}
        assert {k: got.get(k) for k in recorded} == recorded
        assert "tomli-w" in recorded
    finally:
        runtime.api.remove_image(image.ref, force=True)


def test_cli_snapshots_a_container_kernel_minimal(
    python_image: str, tmp_path: Path, runtime: Any
) -> None:
    """`nbcontainers snapshot --kernel` on a container kernel's connection file, `--minimal`:
    only what the session imported (a local package among them, whose wheel is built in the
    kernel's mounted workspace) and what that requires."""
    import sys

    from nbcontainers.catalog.entries import read_pins

    pkg = _make_local_package(tmp_path)
    with container_kernel(tmp_path) as (km, kc):
        for code in (f"%pip install --quiet tomli-w==1.0.0 {pkg}", "import tomli_w, localpkg"):
            _, reply = run(kc, code, timeout=300)
            assert reply["status"] == "ok", reply
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "nbcontainers.cli",
                "snapshot",
                str(tmp_path / "env"),
                "--kernel",
                km.connection_file,
                "--minimal",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "env"
    lock = (folder / "requirements.lock").read_text()
    pins = read_pins(folder / "requirements.lock")
    assert pins["tomli-w"] == "1.0.0" and "ipykernel" in pins
    assert "localpkg @ file:///opt/nbc/wheels/localpkg-0.0.1" in lock
    # In the image, never imported by the session: left out.
    for unused in ("pandas", "scikit-learn", "scipy", "matplotlib"):
        assert unused not in pins, unused
    env = json.loads((folder / "environment.json").read_text())
    assert env["image"] == "python" and env["minimal"] is True
    assert env["apt_added"] == [] and env["gpu"] == []
    assert not list(tmp_path.glob(".nbc-wheels-*"))  # the shared wheel folder is cleaned up


def test_capture_records_torch_and_gpu_facts_of_an_image(torch_image: str, runtime: Any) -> None:
    """The capture in the pytorch-cpu image: torch is installed but not imported, so its facts
    come from a child process; no GPU here, said explicitly."""
    from nbcontainers.catalog.entries import load_catalog
    from nbcontainers.snapshot import image_packages

    snap = image_packages(runtime, load_catalog()[torch_image].ref)
    torch = dict(snap.torch)
    version = next(p.version for p in snap.packages if p.key == "torch")
    assert torch["version"] == version and torch["imported"] is False
    assert torch["cuda"] is None and torch["cuda_available"] is False
    assert torch["devices"] == [] and "cudnn" in torch
    assert snap.facts["gpu"] == [] and "no nvidia-smi" in snap.facts["gpu_probe"]
