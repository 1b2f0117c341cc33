"""The example notebooks run headlessly, and their outputs are what they claim."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from tests.serving_images import remove_new, serving_images

pytestmark = pytest.mark.docker

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _execute(name: str, tmp_path: Path) -> nbformat.NotebookNode:
    path = tmp_path / name
    shutil.copy(EXAMPLES / name, path)
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=180, resources={"metadata": {"path": str(tmp_path)}}).execute()
    return nb


def _text(cell: nbformat.NotebookNode) -> str:
    parts = []
    for out in cell.get("outputs", []):
        parts.append(out.get("text", ""))
        parts.append(out.get("data", {}).get("text/plain", ""))
        parts.extend(out.get("traceback", []))
    return re.sub(r"\x1b\[[0-9;]*m", "", "".join(parts))


def _cell(nb: nbformat.NotebookNode, starts: str) -> nbformat.NotebookNode:
    return next(c for c in nb.cells if c.cell_type == "code" and c.source.startswith(starts))


def test_container_magics_notebook(python_image: str, tmp_path: Path) -> None:
    nb = _execute("container-magics.ipynb", tmp_path)
    where = [c for c in nb.cells if c.source.startswith("import os")]
    assert _text(where[0]) == "'local kernel'" and _text(where[1]) == "'python'"
    rich = _cell(nb, "import matplotlib")
    kinds = {k for out in rich.outputs for k in out.get("data", {})}
    assert {"text/html", "image/png"} <= kinds
    assert "printed in the container" in _text(rich)
    error = _cell(nb, "{'a': 1}")
    assert error.outputs[0]["ename"] == "KeyError" and len(error.outputs) == 1
    widget = _cell(nb, "import ipywidgets")
    view = widget.outputs[0]["data"]["application/vnd.jupyter.widget-view+json"]
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    assert state[view["model_id"]]["state"]["value"] == 3
    assert _text(_cell(nb, "%%container")).strip() == "[[0, 2, 4], [6, 8, 10]]"
    pulled = _cell(nb, "%container pull doubled")
    assert _text(pulled) == "np.int64(30)"
    assert pulled.execution_count == pulled.outputs[0]["execution_count"]
    assert "image       python" in _text(_cell(nb, "%container status"))


def test_nbclient_stops_at_a_failing_container_cell(python_image: str, tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(c)
        for c in ["%load_ext nbcontainers", "%container use python", "x = 1", "x / 0", "x = 2"]
    ]
    client = NotebookClient(
        nb, kernel_name="python3", timeout=180, resources={"metadata": {"path": str(tmp_path)}}
    )
    with pytest.raises(CellExecutionError, match="ZeroDivisionError"):
        client.execute()
    assert nb.cells[4].execution_count is None  # "Run all" stopped at the failing cell
    assert len([o for o in nb.cells[3].outputs if o["output_type"] == "error"]) == 1


def test_papermill_stops_at_a_failing_container_cell(python_image: str, tmp_path: Path) -> None:
    import subprocess
    import sys

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "x"}
    nb.cells = [
        nbformat.v4.new_code_cell(c)
        for c in ["%load_ext nbcontainers", "%container use python", "1 / 0", "print('never')"]
    ]
    nbformat.write(nb, tmp_path / "in.ipynb")
    done = subprocess.run(
        [str(Path(sys.executable).parent / "papermill"), "in.ipynb", "out.ipynb"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode != 0
    assert "ZeroDivisionError" in done.stderr
    out = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    assert out.cells[-1].get("outputs", []) == []


def test_export_serving_notebook(torch_image: str, tmp_path: Path) -> None:
    path = tmp_path / "export-serving.ipynb"
    shutil.copy(EXAMPLES / "export-serving.ipynb", path)
    nb = nbformat.read(path, as_version=4)
    before = serving_images()
    try:
        # The first serving build of a torch model installs torch into the image: minutes.
        NotebookClient(nb, timeout=900, resources={"metadata": {"path": str(tmp_path)}}).execute()
    finally:
        remove_new(before)  # the image the notebook exported
    assert "test accuracy" in _text(_cell(nb, "import torch"))
    exported = _text(_cell(nb, "server = %export-serving"))
    assert "Smoke test passed" in exported and "serving at http://127.0.0.1:" in exported
    assert _text(_cell(nb, "rows =")).startswith("[[")
    assert _text(_cell(nb, "%container pull expected")) == "True"
    assert _text(_cell(nb, "import json, urllib")) == "[1, 2]"
    assert (tmp_path / "serving-model" / "kserve.yaml").is_file()
