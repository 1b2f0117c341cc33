"""The frontends users run: nbclient, papermill, jupyter console; the CLI around them."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from nbcontainers.labels import KERNEL_ID, SERVER_HOST, SERVER_PID, SERVER_STARTED
from nbcontainers.runtimes import ContainerSpec

pytestmark = pytest.mark.docker

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parent.parent


def _notebook(*cells: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    return nb


def test_nbclient_runs_notebook_in_container(python_image: str, tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("a,b\n1,2\n3,4\n")
    nb = _notebook(
        "import os, pandas as pd\nprint(os.path.exists('/.dockerenv'))",
        "pd.read_csv('data.csv').sum().to_dict()",
        "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3]);",
    )
    NotebookClient(
        nb, kernel_name="nbc-python", timeout=120, resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    assert nb.cells[0].outputs[0]["text"].strip() == "True"
    assert nb.cells[1].outputs[0]["data"]["text/plain"] == "{'a': 4, 'b': 6}"
    assert "image/png" in nb.cells[2].outputs[-1]["data"]


def test_nbclient_stops_at_failing_cell(python_image: str, tmp_path: Path) -> None:
    nb = _notebook("x = 1", "1 / 0", "x = 2")
    client = NotebookClient(
        nb, kernel_name="nbc-python", timeout=120, resources={"metadata": {"path": str(tmp_path)}}
    )
    with pytest.raises(CellExecutionError, match="ZeroDivisionError"):
        client.execute()
    assert nb.cells[2].get("outputs") == [] and nb.cells[2].execution_count is None


def test_papermill_cli(python_image: str, tmp_path: Path) -> None:
    src, out = tmp_path / "in.ipynb", tmp_path / "out.ipynb"
    nb = _notebook("n = 1", "print(n * 21)")
    nb.cells[0].metadata["tags"] = ["parameters"]
    nb.metadata["kernelspec"] = {"name": "nbc-python", "language": "python", "display_name": "x"}
    nbformat.write(nb, src)
    done = subprocess.run(
        [str(BIN / "papermill"), "-k", "nbc-python", "-p", "n", "2", str(src), str(out)],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    result = nbformat.read(out, as_version=4)
    assert result.cells[-1].outputs[0]["text"].strip() == "42"


def test_jupyter_console(python_image: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [
            str(BIN / "jupyter"),
            "console",
            "--kernel",
            "nbc-python",
            "--simple-prompt",
            "--ZMQTerminalInteractiveShell.include_other_output=False",
        ],
        input="import os\nprint('in-container', os.path.exists('/.dockerenv'))\nexit\n",
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert "in-container True" in done.stdout, done.stdout + done.stderr


def test_torch_kernel(torch_image: str, tmp_path: Path) -> None:
    nb = _notebook("import torch\nprint(torch.__version__, torch.cuda.is_available())")
    NotebookClient(
        nb,
        kernel_name="nbc-pytorch-cpu",
        timeout=180,
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()
    version, cuda = nb.cells[0].outputs[0]["text"].split()
    assert version.startswith("2.") and cuda == "False"


def test_pip_install_in_container_uses_host_pip_settings(python_image: str, tmp_path: Path) -> None:
    nb = _notebook(
        "import subprocess, sys\n"
        "r = subprocess.run([sys.executable, '-m', 'pip', 'config', 'list'], "
        "capture_output=True, text=True)\nprint(r.stdout)",
        "%pip install --quiet --no-deps --user tomli-w==1.0.0",
        "import importlib, site, sys\nsys.path.append(site.getusersitepackages())\n"
        "import tomli_w\nprint(tomli_w.dumps({'ok': True}).strip())",
    )
    NotebookClient(
        nb, kernel_name="nbc-python", timeout=300, resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    config = nb.cells[0].outputs[0]["text"]
    from nbcontainers.pipsettings import read_pip_settings

    host = read_pip_settings()
    if host.cert:
        assert host.cert in config
    assert nb.cells[2].outputs[0]["text"].strip() == "ok = true"


def test_kernelspec_install_cli(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(BIN / "nbcontainers"), "kernelspec", "install", "--prefix", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    spec_dir = tmp_path / "share" / "jupyter" / "kernels" / "nbc-python"
    spec = json.loads((spec_dir / "kernel.json").read_text())
    assert spec["metadata"]["kernel_provisioner"] == {
        "provisioner_name": "nbcontainers",
        "config": {"image": "python"},
    }
    assert (spec_dir / "logo-64x64.png").read_bytes().startswith(b"\x89PNG")
    for name in ("nbc-pytorch-cpu", "nbc-pytorch-gpu"):
        assert (tmp_path / "share" / "jupyter" / "kernels" / name / "kernel.json").is_file()


def test_gc_removes_orphans_and_keeps_live_kernels(python_image: str, runtime: Any) -> None:
    from nbcontainers.catalog import load_catalog

    ref = load_catalog()["python"].ref
    me = str(os.getpid())

    def start(kernel_id: str, pid: str, started: str) -> str:
        return str(
            runtime.run(
                ContainerSpec(
                    image=ref,
                    command=("sleep", "300"),
                    name=f"nbc-gc-test-{kernel_id}",
                    labels={
                        KERNEL_ID: kernel_id,
                        SERVER_HOST: socket.gethostname(),
                        SERVER_PID: pid,
                        SERVER_STARTED: started,
                    },
                )
            )
        )

    from nbcontainers.labels import process_start_time

    orphan = start("orphan", "999999", "1")
    live = start("live", me, process_start_time(os.getpid()))
    try:
        dry = subprocess.run(
            [str(BIN / "nbcontainers"), "gc", "--dry-run"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "would remove nbc-gc-test-orphan" in dry.stdout
        assert runtime.state(orphan) is not None
        done = subprocess.run(
            [str(BIN / "nbcontainers"), "gc"], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        assert "nbc-gc-test-live" not in done.stdout
        assert runtime.state(orphan) is None
        assert runtime.state(live) is not None
    finally:
        runtime.remove(orphan)
        runtime.remove(live)


def test_doctor_reports(python_image: str) -> None:
    done = subprocess.run(
        [str(BIN / "nbcontainers"), "doctor"], capture_output=True, text=True, timeout=60
    )
    assert "[ok  ] engine: Docker" in done.stdout
    assert "image python" in done.stdout and "gpus" in done.stdout
