"""`%container pin` in JupyterLab and Notebook 7 (headless Chromium on a real Jupyter Server,
a real container kernel): the kernel writes the pin into the file while the frontend holds its
own copy; saving that copy over the file (the frontend's "Overwrite") must not lose the pin,
which the cell's output carries. Shows what each frontend does when the file changed on disk."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

import tests.test_jupyterlab_docker as lab
from nbcontainers.kernels.declared import PIN_MIMETYPE, read_declaration

pytestmark = pytest.mark.docker
CELLS = ["%load_ext nbcontainers", "%container use python", "%container pin"]


def _save_over(page: Any, path: Path, before: float) -> str:
    """Save the frontend's copy; answer "Overwrite" if it asks. Return the dialog's text."""
    page.keyboard.press("Control+s")
    asked = ""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        dialog = page.locator(".jp-Dialog")
        if dialog.count():
            asked = dialog.first.inner_text()
            page.locator(".jp-Dialog button", has_text="Overwrite").first.click()
        if path.stat().st_mtime > before and "nbcontainers" not in _saved_metadata(path):
            break
        time.sleep(0.3)
    return asked


def _saved_metadata(path: Path) -> dict[str, Any]:
    """The file's metadata, or {"nbcontainers": ...} while the server is still writing it:
    Jupyter Server's atomic_writing keeps a backup but writes the file in place, so a read
    can see it empty or cut."""
    try:
        return _metadata(path)
    except json.JSONDecodeError:
        return {"nbcontainers": "being written"}


def _metadata(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()).get("metadata", {}))


@pytest.mark.parametrize(
    ("app", "idle"), [("lab/tree", "text=| Idle"), ("notebooks", lab.NB7_IDLE)]
)
def test_a_pin_survives_the_frontend_saving_its_own_copy(
    server: tuple[str, str, Path], runtime: object, app: str, idle: str
) -> None:
    if not Path(lab.CHROMIUM).exists():
        pytest.fail("chromium is missing: `make test` installs it (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    base, token, root = server
    path = root / "pinned.ipynb"
    lab._notebook(path, "python3", CELLS)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=lab.CHROMIUM, args=lab.FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 850})
            page.goto(f"{base}/{app}/pinned.ipynb?token={token}")
            shown = lab._run_all_and_wait(page, "Pinned container kernel", timeout=180, idle=idle)
            assert f"Written to {path}" in shown, shown
            # The kernel wrote the file; the frontend's copy does not have it in its metadata.
            pinned = _metadata(path)["nbcontainers"]
            assert pinned["image"] == "python" and pinned["digest"].startswith("sha256:")
            asked = _save_over(page, path, path.stat().st_mtime)
            print(f"{app}: dialog on save: {asked!r}")
            saved = json.loads(path.read_text())
            assert "nbcontainers" not in saved["metadata"]  # the frontend's copy won...
            outputs = [o for c in saved["cells"] for o in c.get("outputs", [])]
            assert any(o.get("data", {}).get(PIN_MIMETYPE) == pinned for o in outputs), outputs
            declaration, note = read_declaration(path, "python")  # ...and the pin is kept
            assert (declaration.image, declaration.digest, note) == (
                "python",
                pinned["digest"],
                None,
            )
        finally:
            browser.close()
