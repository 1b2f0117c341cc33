"""The frontends users run: nbclient, papermill, jupyter console (the CLI: tests/cli/)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

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
