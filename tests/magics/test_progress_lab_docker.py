"""JupyterLab in headless Chromium: `%container use` of an image that is not built yet shows
an ipywidgets progress bar in the cell, which ends green, then the cell says it switched."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import nbformat
import pytest

from nbcontainers.catalog.entries import load_catalog

from ..test_jupyterlab_docker import CHROMIUM, FLAGS

pytestmark = pytest.mark.docker


@pytest.fixture
def lab(tiny: tuple[str, Path], server: tuple[str, str, Path]) -> tuple[str, str, Path]:
    """The server, started after ``tiny`` so it (and its kernels) see the user catalog."""
    return server


def test_lab_shows_a_widget_bar_for_the_build(
    tiny: tuple[str, Path], lab: tuple[str, str, Path], runtime: Any
) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is missing: `make test` installs it (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    name, folder = tiny
    (folder / "Dockerfile").write_text(
        (folder / "Dockerfile").read_text().replace("echo built > /dev/null", "sleep 2")
    )
    ref = load_catalog()[name].ref
    base, token, root = lab
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.cells = [nbformat.v4.new_code_cell(f"%load_ext nbcontainers\n%container use {name}")]
    nbformat.write(nb, root / "progress.ipynb")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 700})
            page.goto(f"{base}/lab/tree/progress.ipynb?reset&token={token}")
            page.wait_for_selector(".jp-Notebook .jp-CodeCell", timeout=60_000)
            page.wait_for_selector("text=| Idle", timeout=90_000)
            page.click(".jp-Notebook .jp-Cell .jp-InputArea-editor")
            page.keyboard.press("Escape")
            page.keyboard.press("Shift+Enter")
            deadline = time.monotonic() + 90
            saw_bar = False
            while "Cells now run in container kernel" not in page.inner_text(".jp-Notebook"):
                saw_bar = (
                    saw_bar or page.query_selector(".jp-OutputArea .widget-hprogress") is not None
                )
                if time.monotonic() > deadline:
                    page.screenshot(path=str(root / "progress-timeout.png"))
                    raise AssertionError(page.inner_text(".jp-Notebook"))
                time.sleep(0.2)
            assert saw_bar or page.query_selector(".jp-OutputArea .widget-hprogress") is not None
            shown = page.inner_text(".jp-OutputArea")
            assert "is not built yet: building it now" in shown and f"Built {ref} in" in shown
            assert "[2/2] RUN sleep 2" in shown  # the bar's step label
            assert page.query_selector(".jp-OutputArea .progress-bar-success") is not None
            assert "  [2/2]" not in shown  # the steps went to the bar, not to text lines
            page.screenshot(path=str(root / "progress.png"))
        finally:
            browser.close()
