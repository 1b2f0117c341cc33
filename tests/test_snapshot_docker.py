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

from .kernels import Frontend, notebook

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
    for image in runtime.api.images(name="nbcontainers/snapshot-env", quiet=True):
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
    from nbcontainers.build import build_image
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
