"""Snapshots of real local kernels, no engine: `nbcontainers snapshot --kernel` against a
running ipykernel (`--minimal` keeps what it imported), the errors when no kernel answers, and
`%container snapshot` run by nbclient in a notebook with no container active."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import nbformat
import pytest
from jupyter_client.connect import write_connection_file
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

from nbcontainers.catalog.entries import read_pins
from nbcontainers.evaluate import find_connection_file

from ..drive import connected, run

CLI = [sys.executable, "-m", "nbcontainers.cli", "snapshot"]


@pytest.fixture
def pandas_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[KernelManager]:
    """A local ipykernel whose session imported pandas (and nothing else of the test env),
    its connection file where a Jupyter server puts them: kernel-<id>.json in the runtime
    folder."""
    runtime_dir = tmp_path / "runtime"
    runtime_dir.mkdir()
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(runtime_dir))
    kernel_id = str(uuid.uuid4())
    km = KernelManager(
        kernel_name="python3",
        kernel_id=kernel_id,
        connection_file=str(runtime_dir / f"kernel-{kernel_id}.json"),
    )
    km.start_kernel(cwd=str(tmp_path))
    try:
        with connected(km) as kc:
            _, reply = run(kc, "import pandas")
            assert reply["status"] == "ok", reply
        yield km
    finally:
        km.shutdown_kernel(now=True)


def test_cli_snapshots_a_running_kernel_minimal(
    pandas_kernel: KernelManager, tmp_path: Path
) -> None:
    conn = Path(pandas_kernel.connection_file)
    assert find_connection_file(pandas_kernel.kernel_id) == conn.resolve()
    out = tmp_path / "env"
    done = subprocess.run(
        [*CLI, str(out), "--kernel", conn.name, "--minimal"],  # the kernel-<id>.json form
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert f"from kernel {conn.name}" in done.stdout
    pins = read_pins(out / "requirements.lock")
    # What the session imported, with the kernel's own versions, and what those require...
    assert pins["pandas"] == version("pandas") and pins["numpy"] == version("numpy")
    assert "python-dateutil" in pins and "ipykernel" in pins  # a requirement; the kernel itself
    # ...and nothing the session never imported, though the environment has it.
    for unused in ("jupyterlab", "nbclient", "papermill", "mypy", "ruff", "playwright"):
        assert unused not in pins, unused
    env = json.loads((out / "environment.json").read_text())
    assert env["minimal"] is True and env["gpu"] == [] and env["gpu_probe"]
    assert {p["name"].lower() for p in env["packages"]} >= {"pandas", "numpy"}
    # The kernel is left as it was: the capture's helpers are gone from its namespace.
    with connected(pandas_kernel) as kc:
        said, reply = run(kc, "print(sorted(n for n in globals() if n.startswith('__nbc')))")
    assert reply["status"] == "ok" and said.strip() == "[]"


def test_cli_kernel_that_does_not_answer(tmp_path: Path) -> None:
    # A connection file whose ports nobody listens on: a kernel that died without cleaning up.
    conn, _ = write_connection_file(str(tmp_path / "kernel-dead.json"), key=b"k")
    done = subprocess.run(
        [*CLI, str(tmp_path / "env"), "--kernel", conn, "--timeout", "2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 7
    assert "did not answer within 2 s" in done.stderr and "--timeout" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "env").exists()
    done = subprocess.run(
        [*CLI, str(tmp_path / "env"), "--kernel", "no-such-kernel-5f1e"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 7 and "No kernel connection file 'no-such-kernel-5f1e'" in done.stderr
    done = subprocess.run(
        [*CLI, str(tmp_path / "env"), "--kernel", conn, "--python", sys.executable],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "not both" in done.stderr


def test_cli_refuses_a_folder_that_is_not_a_snapshot(tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "data.csv").write_text("1,2\n")
    done = subprocess.run([*CLI, str(precious)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 7
    assert done.stderr.startswith("Error: ") and "is not an nbcontainers snapshot" in done.stderr
    assert [p.name for p in precious.iterdir()] == ["data.csv"]


def test_notebook_snapshots_its_local_kernel(tmp_path: Path) -> None:
    (tmp_path / "analysis.py").write_text("print('analysis')\n")
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("%load_ext nbcontainers"),
        nbformat.v4.new_code_cell("import pandas"),
        nbformat.v4.new_code_cell("%container snapshot env"),
    ]
    NotebookClient(
        nb, kernel_name="python3", timeout=600, resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    said = "".join(o.get("text", "") for o in nb.cells[2].outputs)
    assert "Snapshot of the local kernel written to" in said
    folder = tmp_path / "env"
    pins = read_pins(folder / "requirements.lock")
    assert pins["pandas"] == version("pandas")
    assert "jupyterlab" in pins  # not --minimal: the whole environment
    assert "ARG BASE_IMAGE=" in (folder / "Dockerfile").read_text()
    env = json.loads((folder / "environment.json").read_text())
    assert env["kind"] == "nbcontainers-snapshot" and env["image"] is None
    assert env["python"] == ".".join(map(str, sys.version_info[:3]))
    assert env["gpu"] == [] and "gpu_probe" in env
    kinds = {p["name"]: p["kind"] for p in env["packages"]}
    assert kinds["pandas"] == "index"
    # nbcontainers itself is an editable install here: built into a wheel and vendored.
    assert kinds["nbcontainers"] == "editable"
    assert (
        "nbcontainers @ file:///opt/nbc/wheels/nbcontainers-"
        in (folder / "requirements.lock").read_text()
    )
    assert list((folder / "wheels").glob("nbcontainers-*.whl"))
    assert (folder / "project" / "analysis.py").is_file()
