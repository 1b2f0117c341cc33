"""JupyterLab and Notebook 7 in headless Chromium: the picker shows the container kernels, a
notebook on nbc-python runs in a container (in both frontends), and %container relays cells and
a widget from one. The screenshots the README shows are taken here (docs/images/), so they stay
true."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import nbformat
import pytest

pytestmark = pytest.mark.docker

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parent.parent / "docs" / "images"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _notebook(path: Path, kernel: str, cells: list[str]) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": kernel, "display_name": kernel, "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(nb, path)


def _run_all_and_wait(page, text: str, timeout: float = 90, idle: str = "text=| Idle") -> str:  # type: ignore[no-untyped-def]
    page.wait_for_selector(".jp-Notebook .jp-CodeCell", timeout=60_000)
    # The kernel has started and connected once the status bar says so.
    page.wait_for_selector(idle, timeout=90_000)
    page.click(".jp-Notebook .jp-Cell .jp-InputArea-editor")
    page.keyboard.press("Escape")
    for _ in page.query_selector_all(".jp-Notebook .jp-CodeCell"):
        page.keyboard.press("Shift+Enter")
        time.sleep(0.5)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        shown = page.inner_text(".jp-Notebook")
        if text in shown:
            return shown
        time.sleep(0.5)
    raise AssertionError(f"{text!r} never showed; the notebook shows:\n{shown}")


def test_jupyterlab_runs_container_kernels(server: tuple[str, str, Path], runtime: object) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is missing: `make test` installs it (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    base, token, root = server
    _notebook(
        root / "picker.ipynb",
        "nbc-python",
        ["import os, platform\nprint('image:', os.environ.get('NBCONTAINERS_IMAGE'))"],
    )
    _notebook(
        root / "magics.ipynb",
        "python3",
        [
            "%load_ext nbcontainers",
            "%container use python",
            "import os\nprint('relayed from', os.environ.get('NBCONTAINERS_IMAGE'))",
            "import ipywidgets as w\nw.IntSlider(value=7, description='in container')",
        ],
    )
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 850})
            page.goto(f"{base}/lab?reset&token={token}")
            page.wait_for_selector(".jp-LauncherCard", timeout=60_000)
            cards = page.inner_text(".jp-Launcher-content")
            assert "Python 3.11 · scientific (container)" in cards
            assert "PyTorch 2.13 · CPU (container)" in cards
            SHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SHOTS / "launcher.png"))

            page = browser.new_page(viewport={"width": 1300, "height": 850})
            page.goto(f"{base}/lab/tree/picker.ipynb?reset&token={token}")
            assert "image: python" in _run_all_and_wait(page, "image: python")
            page.screenshot(path=str(SHOTS / "lab-notebook.png"))

            # Notebook 7 is another app of the same Jupyter Server: same kernelspecs, same cells.
            page = browser.new_page(viewport={"width": 1300, "height": 850})
            page.goto(f"{base}/notebooks/picker.ipynb?token={token}")
            shown = _run_all_and_wait(
                page, "image: python", idle="text=Python 3.11 · scientific (container)"
            )
            assert "image: python" in shown
            page.screenshot(path=str(SHOTS / "notebook7.png"))

            page = browser.new_page(viewport={"width": 1300, "height": 850})
            page.goto(f"{base}/lab/tree/magics.ipynb?reset&token={token}")
            _run_all_and_wait(page, "relayed from python")
            page.wait_for_selector(".jp-OutputArea .widget-slider", timeout=30_000)
            assert "in container" in page.inner_text(".jp-OutputArea .widget-slider")
            page.screenshot(path=str(SHOTS / "magics.png"))
        finally:
            browser.close()
