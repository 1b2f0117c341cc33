"""Snapshot capture parsing, classification and folder writing, without an engine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from nbcontainers.errors import SnapshotError
from nbcontainers.recipe.capture import parse_capture
from nbcontainers.snapshot import (
    MARKER,
    compare_packages,
    minimal_packages,
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


# -- conda: a fabricated conda prefix, captured by the real capture code ----------------------


def _dist_info(site: Path, name: str, version: str, installer: str) -> Path:
    info = site / f"{name}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "INSTALLER").write_text(installer + "\n")
    return info


def _conda_record(prefix: Path, site: Path, name: str, version: str, build: str) -> None:
    meta = prefix / "conda-meta"
    meta.mkdir(exist_ok=True)
    rel = site.relative_to(prefix) / f"{name}-{version}.dist-info"
    record = {
        "name": name,
        "version": version,
        "build": build,
        "channel": "https://conda.anaconda.org/conda-forge",
        "files": [f"{rel}/METADATA", f"{rel}/INSTALLER", f"{site.relative_to(prefix)}/{name}.py"],
    }
    (meta / f"{name}-{version}-{build}.json").write_text(json.dumps(record))


@pytest.fixture(scope="module")
def conda_prefix(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Python prefix laid out as conda leaves one: conda-meta/*.json records listing the
    files (dist-info included) of each package conda installed."""
    prefix = tmp_path_factory.mktemp("conda") / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(prefix)], check=True)
    (site,) = prefix.glob("lib/python3*/site-packages")
    # conda-forge's six: INSTALLER says conda, and a direct_url.json points at the build
    # machine's source folder (which alone would read as an unreproducible local install).
    six = _dist_info(site, "six", "1.17.0", "conda")
    (six / "direct_url.json").write_text(
        json.dumps({"url": "file:///home/conda/feedstock_root/build_artifacts/six", "dir_info": {}})
    )
    _conda_record(prefix, site, "six", "1.17.0", "pyhd8ed1ab_0")
    # An older conda package built by pip: INSTALLER says pip, only the record tells.
    _dist_info(site, "condaonly", "0.3", "pip")
    _conda_record(prefix, site, "condaonly", "0.3", "py311_1")
    # INSTALLER conda without a record (a prefix whose conda-meta was pruned).
    _dist_info(site, "fromconda", "2.0", "conda")
    _dist_info(site, "plainpip", "1.0", "pip")
    return prefix


def test_capture_classifies_conda_installs(conda_prefix: Path) -> None:
    from nbcontainers.recipe.capture import capture_python

    snap = capture_python(str(conda_prefix / "bin" / "python"))
    kinds = {p.name: (p.kind, p.source) for p in snap.packages}
    assert kinds["six"] == ("conda", "conda-forge::six=1.17.0=pyhd8ed1ab_0")
    assert kinds["condaonly"] == ("conda", "conda-forge::condaonly=0.3=py311_1")
    assert kinds["fromconda"] == ("conda", "fromconda=2.0")
    assert kinds["plainpip"] == ("index", "")


def test_conda_install_pinned_from_the_index_or_refused(conda_prefix: Path, tmp_path: Path) -> None:
    from nbcontainers.recipe.capture import capture_python

    snap = capture_python(str(conda_prefix / "bin" / "python"))
    hashes = {("six", "1.17.0"): ["a" * 64], ("plainpip", "1.0"): ["b" * 64]}
    # condaonly 0.3 has no twin on the index: refused by name, with what to do.
    with pytest.raises(SnapshotError) as caught:
        write_snapshot(snap, tmp_path / "refused", hashes=hashes)
    said = str(caught.value)
    assert "condaonly==0.3 (conda-forge::condaonly=0.3=py311_1)" in said
    assert "installed by conda" in said and "%pip install condaonly==0.3" in said
    assert "six" not in said.split("Install")[0]  # six is reproducible
    assert not (tmp_path / "refused").exists()
    # Where the index has the same version, it is pinned from there (hash mode) and
    # environment.json still says conda installed it.
    ok = tuple(p for p in snap.packages if p.name in ("six", "plainpip"))
    snap = type(snap)(**{**snap.__dict__, "packages": ok})
    folder = write_snapshot(snap, tmp_path / "env", hashes=hashes)
    lock = (folder / "requirements.lock").read_text()
    assert f"six==1.17.0 \\\n    --hash=sha256:{'a' * 64}" in lock
    assert "installed by conda, pinned here from pip's index (same version): six" in lock
    env = json.loads((folder / "environment.json").read_text())
    six = next(p for p in env["packages"] if p["name"] == "six")
    assert six == {
        "name": "six",
        "version": "1.17.0",
        "kind": "conda",
        "source": "conda-forge::six=1.17.0=pyhd8ed1ab_0",
        "rebuilt_from": "index",
    }


def test_cli_refuses_a_conda_only_package_and_pins_the_rest(
    conda_prefix: Path, tmp_path: Path
) -> None:
    python = str(conda_prefix / "bin" / "python")
    cli = [sys.executable, "-m", "nbcontainers.cli", "snapshot"]
    done = subprocess.run(
        [*cli, str(tmp_path / "a"), "--python", python], capture_output=True, text=True
    )
    assert done.returncode == 7, done.stderr
    assert done.stderr.startswith("Error: Cannot reproduce condaonly==0.3")
    assert "Traceback" not in done.stderr and not (tmp_path / "a").exists()
    # Only six (conda-forge) left: pip's real index has six 1.17.0, so it is pinned with the
    # index's own hashes.
    site = next(conda_prefix.glob("lib/python3*/site-packages"))
    trimmed = tmp_path / "trimmed"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(trimmed)], check=True)
    (tsite,) = trimmed.glob("lib/python3*/site-packages")
    subprocess.run(["cp", "-a", str(site / "six-1.17.0.dist-info"), str(tsite)], check=True)
    _conda_record(trimmed, tsite, "six", "1.17.0", "pyhd8ed1ab_0")
    done = subprocess.run(
        [*cli, str(tmp_path / "b"), "--python", str(trimmed / "bin" / "python")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    lock = (tmp_path / "b" / "requirements.lock").read_text()
    assert "six==1.17.0 \\\n    --hash=sha256:" in lock


# -- GPU facts --------------------------------------------------------------------------------


H100_SMI = """NVIDIA H100 80GB HBM3, 550.54.15, 81559 MiB
NVIDIA H100 80GB HBM3, 550.54.15, 81559 MiB
"""


def test_nvidia_smi_output_is_parsed() -> None:
    from nbcontainers.recipe.capture import parse_nvidia_smi

    assert (
        parse_nvidia_smi(H100_SMI)
        == [{"name": "NVIDIA H100 80GB HBM3", "driver_version": "550.54.15", "memory_mib": 81559}]
        * 2
    )
    odd = "Tesla T4, with, commas, 535.104.05, [N/A]\n\nno fields here\n"
    assert parse_nvidia_smi(odd) == [
        {"name": "Tesla T4, with, commas", "driver_version": "535.104.05", "memory_mib": None}
    ]


def test_gpu_facts_in_environment_json(tmp_path: Path) -> None:
    with_gpu = parse_capture(
        _capture(nvidia_smi={"found": True, "rc": 0, "stdout": H100_SMI, "stderr": ""})
    )
    assert with_gpu.facts["gpu"][0]["name"] == "NVIDIA H100 80GB HBM3"
    assert with_gpu.facts["gpu_probe"] == "nvidia-smi"
    broken = parse_capture(
        _capture(
            nvidia_smi={
                "found": True,
                "rc": 9,
                "stdout": "",
                "stderr": "NVIDIA-SMI has failed because it couldn't communicate with the "
                "NVIDIA driver.\n",
            }
        )
    )
    assert broken.facts["gpu"] == []
    assert broken.facts["gpu_probe"].startswith("nvidia-smi failed (exit 9): NVIDIA-SMI has")
    none = parse_capture(_capture())  # a capture without nvidia-smi at all
    ok = tuple(p for p in none.packages if p.kind != "local")
    none = type(none)(**{**none.__dict__, "packages": ok})
    env = json.loads((write_snapshot(none, tmp_path / "env") / "environment.json").read_text())
    assert env["gpu"] == [] and "no NVIDIA GPU" in env["gpu_probe"]


def test_capture_of_this_python_has_explicit_gpu_and_torch_facts() -> None:
    """The real capture code on this (GPU-less) machine: an explicit empty GPU list."""
    from nbcontainers.recipe.capture import capture_python

    snap = capture_python(sys.executable)
    assert snap.facts["gpu"] == [] or all("name" in g for g in snap.facts["gpu"])
    assert isinstance(snap.facts["gpu_probe"], str) and snap.facts["gpu_probe"]
    assert snap.torch == {} or "version" in snap.torch or "error" in snap.torch
