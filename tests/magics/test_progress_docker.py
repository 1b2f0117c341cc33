"""`%container use` of an image that is not built yet, in real notebook kernels on real
Docker: nbclient gets the build's progress as text and the next cell runs in the new image;
an interactive frontend gets a widget bar, and an interrupt cancels the build cleanly.

The image is a user catalog entry FROM the catalog's python image with two trivial steps,
so a build takes seconds; every image the tests build is removed."""

from __future__ import annotations

import re
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from nbcontainers.catalog.entries import load_catalog

from ..drive import cell_text, executed, notebook

pytestmark = pytest.mark.docker

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def test_use_builds_a_missing_image_with_text_progress_for_nbclient(
    tiny: tuple[str, Path], runtime: Any, tmp_path: Path
) -> None:
    name, _ = tiny
    ref = load_catalog()[name].ref
    assert runtime.image_info(ref) is None
    cells = ["%load_ext nbcontainers", f"%container use {name}"]
    nb = executed([*cells, "import os; print(os.environ['NBC_PROGRESS_TEST'])"], tmp_path)
    used = cell_text(nb.cells[1])
    assert f"Image {name} ({ref}) is not built yet: building it now with" in used
    assert re.search(r"^  \[2/\d\] RUN echo built > /dev/null$", used, re.M), used
    assert re.search(rf"^Built {re.escape(ref)} in \d+ s\.$", used, re.M), used
    assert f"Cells now run in container kernel {name!r}" in used
    assert not any(WIDGET_VIEW in out.get("data", {}) for out in nb.cells[1].outputs)
    assert cell_text(nb.cells[2]).strip() == name  # the next cell ran in the image just built
    assert runtime.image_info(ref) is not None


def _step_processes(marker: str) -> list[str]:
    done = subprocess.run(["pgrep", "-af", marker], capture_output=True, text=True, check=False)
    return [ln for ln in done.stdout.splitlines() if "pgrep" not in ln]


def test_an_interrupt_cancels_the_build_and_leaves_nothing(
    tiny: tuple[str, Path], runtime: Any, tmp_path: Path
) -> None:
    name, folder = tiny
    marker = f"sleep 600.{uuid.uuid4().int % 10000:04d}"
    (folder / "Dockerfile").write_text(
        (folder / "Dockerfile").read_text().replace("echo built > /dev/null", marker)
    )
    ref = load_catalog()[name].ref  # the tag follows the Dockerfile
    containers_before = {s.id for s in runtime.list({})}
    with notebook(tmp_path) as fe:
        # As JupyterLab sends it; interrupted once the slow step runs.
        reply, outputs = fe.interrupted(
            f"%container use {name}", when=lambda: bool(_step_processes(marker))
        )
        assert reply is not None, outputs
        assert reply["content"]["status"] == "error"
        assert reply["content"]["ename"] == "KeyboardInterrupt"
        streams = "".join(m["content"].get("text", "") for m in outputs)
        assert "is not built yet: building it now" in streams
        assert re.search(r"Cancelled the build after \d+ s: it left no image\.", streams)
        # An interactive frontend got the widget bar, and it moved with the steps.
        assert any(WIDGET_VIEW in m["content"].get("data", {}) for m in outputs)
        updates = [m for m in outputs if m["msg_type"] == "comm_msg"]
        assert any("RUN sleep" in str(m["content"]["data"]) for m in updates)
        assert fe.text("print('still here')") == "still here\n"
    assert runtime.image_info(ref) is None
    deadline = time.monotonic() + 15
    while _step_processes(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _step_processes(marker) == []  # the engine stopped the step
    assert {s.id for s in runtime.list({})} <= containers_before  # no build container
