"""Snapshot capture parsing, classification and folder writing, without an engine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from nbcontainers.snapshot import (
    MARKER,
    SnapshotError,
    compare_packages,
    minimal_packages,
    parse_capture,
    write_snapshot,
)


def _capture(**extra: object) -> str:
    dists = [
        {
            "name": "numpy",
            "version": "2.4.6",
            "installer": "pip",
            "direct_url": None,
            "requires": [],
            "top_level": ["numpy"],
        },
        {
            "name": "pandas",
            "version": "3.1.1",
            "installer": "pip",
            "direct_url": None,
            "requires": ["numpy>=1.26", "pytest; extra == 'test'"],
            "top_level": ["pandas"],
        },
        {
            "name": "torch",
            "version": "2.13.0+cpu",
            "installer": "pip",
            "direct_url": None,
            "requires": [],
            "top_level": ["torch"],
        },
        {
            "name": "mylib",
            "version": "0.1",
            "installer": "pip",
            "direct_url": {
                "url": "https://user:tok@git.example/me/mylib",
                "vcs_info": {"vcs": "git", "commit_id": "abc123"},
            },
            "requires": [],
            "top_level": ["mylib"],
        },
        {
            "name": "wheelfile",
            "version": "1.0",
            "installer": "pip",
            "direct_url": {
                "url": "https://files.example/w-1.0.whl",
                "archive_info": {"hashes": {"sha256": "ff00"}},
            },
            "requires": [],
            "top_level": ["w"],
        },
        {
            "name": "localpkg",
            "version": "0.0.1",
            "installer": "pip",
            "direct_url": {"url": "file:///gone/localpkg", "dir_info": {}},
            "requires": [],
            "top_level": ["localpkg"],
        },
        {
            "name": "setuptools",
            "version": "66.1.1",
            "installer": "",
            "direct_url": None,
            "requires": [],
            "top_level": ["setuptools"],
        },
    ]
    data = {
        "python": "3.11.2",
        "distributions": dists,
        "modules": ["pandas", "json"],
        "apt": ["python3=3.11.2-1", "git=1:2.39"],
        "history": ["%pip install mylib"],
        "image": "python",
        "cwd": "/nowhere",
    }
    data.update(extra)
    return json.dumps(data)


def test_classification_and_credentials_are_stripped() -> None:
    snap = parse_capture(_capture())
    kinds = {p.name: (p.kind, p.source) for p in snap.packages}
    assert kinds["numpy"] == ("index", "")
    assert kinds["mylib"] == ("vcs", "git+https://git.example/me/mylib@abc123")
    assert "tok" not in json.dumps(kinds)
    assert kinds["wheelfile"] == ("url", "https://files.example/w-1.0.whl#sha256=ff00")
    assert kinds["localpkg"] == ("local", "file:///gone/localpkg")
    assert kinds["setuptools"][0] == "system"


def test_minimal_keeps_imported_and_their_requirements() -> None:
    names = {p.name for p in minimal_packages(parse_capture(_capture()))}
    assert names == {"pandas", "numpy"}  # not torch; not pandas' test extra


def test_unreproducible_local_install_writes_nothing(tmp_path: Path) -> None:
    target = tmp_path / "env"
    with pytest.raises(SnapshotError, match=r"localpkg \(file:///gone/localpkg\)"):
        write_snapshot(parse_capture(_capture()), target)
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []  # no staging folder left behind


def test_written_folder(tmp_path: Path) -> None:
    snap = parse_capture(_capture())
    ok = [p for p in snap.packages if p.kind != "local"]
    snap = type(snap)(**{**snap.__dict__, "packages": tuple(ok)})
    folder = write_snapshot(snap, tmp_path / "env", apt_base={"python3=3.11.2-1"})
    lock = (folder / "requirements.lock").read_text()
    assert "numpy==2.4.6" in lock and "torch==2.13.0+cpu" in lock
    assert "mylib @ git+https://git.example/me/mylib@abc123" in lock
    assert "setuptools" not in lock  # comes with the system layer
    dockerfile = (folder / "Dockerfile").read_text()
    assert "ARG BASE_IMAGE=debian:bookworm-slim@sha256:" in dockerfile
    assert "ARG EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu" in dockerfile
    assert "python3-pip git" in dockerfile  # the apt delta against the base image
    assert dockerfile.index("requirements.lock") < dockerfile.index("project/")
    assert "USER nbc" in dockerfile
    env = json.loads((folder / "environment.json").read_text())
    assert env["kind"] == MARKER and env["history"] == ["%pip install mylib"]
    assert ".env" in (folder / ".dockerignore").read_text()
    # An earlier snapshot may be replaced; any other folder may not.
    write_snapshot(snap, folder)
    other = tmp_path / "precious"
    other.mkdir()
    (other / "data.csv").write_text("keep me")
    with pytest.raises(SnapshotError, match="is not an nbcontainers snapshot"):
        write_snapshot(snap, other)
    assert (other / "data.csv").read_text() == "keep me"


def test_compare_reports_differences() -> None:
    live = parse_capture(_capture())
    rebuilt_data = json.loads(_capture())
    rebuilt_data["distributions"] = [
        d for d in rebuilt_data["distributions"] if d["name"] != "numpy"
    ]
    rebuilt_data["distributions"][0]["version"] = "9.9"
    diff = compare_packages(live, parse_capture(json.dumps(rebuilt_data)))
    assert "missing in rebuild: numpy==2.4.6" in diff
    assert "version differs: pandas live 3.1.1 rebuilt 9.9" in diff


def test_cli_snapshots_a_python_environment(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "six==1.17.0"], check=True)
    out = tmp_path / "snap"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "nbcontainers.cli",
            "snapshot",
            str(out),
            "--python",
            str(venv / "bin" / "python"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "six==1.17.0" in (out / "requirements.lock").read_text()


def test_hash_mode_only_when_every_line_has_hashes(tmp_path: Path) -> None:
    snap = parse_capture(_capture())
    index_only = tuple(p for p in snap.packages if p.kind in ("index", "system"))
    snap = type(snap)(**{**snap.__dict__, "packages": index_only})
    hashes = {(p.name, p.version): [f"{i:064x}"] for i, p in enumerate(index_only)}
    lock = (write_snapshot(snap, tmp_path / "a", hashes=hashes) / "requirements.lock").read_text()
    assert lock.count("--hash=sha256:") == 3  # numpy, pandas, torch; not setuptools
    del hashes[("numpy", "2.4.6")]
    lock = (write_snapshot(snap, tmp_path / "b", hashes=hashes) / "requirements.lock").read_text()
    assert "--hash" not in lock and "no hash lines" in lock
