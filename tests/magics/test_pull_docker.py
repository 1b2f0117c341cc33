"""`%container use` of a registry image that is not on the engine, in real notebook kernels on
real Docker, against a registry the tests run on loopback (:mod:`tests.registry`): nbclient
gets the pull's progress as text and the next cell runs in the pulled image; an interrupt
during a throttled pull (JupyterLab's request, so a widget bar) cancels it, the engine drops
its downloads and no image is left.

The registry's images exist only there: the catalog's python image (or the base image) with
one layer of random bytes on top. Every image pulled is removed, and so is the registry."""

from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nbcontainers.catalog.entries import load_catalog, register_user_image

from ..drive import cell_text, executed, notebook
from ..registry import Image, Registry, layer_of, saved_image

pytestmark = pytest.mark.docker

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


@pytest.fixture(scope="module")
def registry() -> Iterator[Registry]:
    with Registry().running() as running:
        yield running


def _served(
    registry: Registry, base_ref: str, folder: Path, megabytes: int
) -> tuple[str, str, Image]:
    """Serve ``base_ref`` plus a layer with a marker file and ``megabytes`` of random bytes;
    return (ref on the registry, the marker's content, the image)."""
    token = uuid.uuid4().hex
    layer = layer_of(
        {"nbc-pull/marker": token.encode(), "nbc-pull/random.bin": os.urandom(megabytes << 20)},
        folder / "extra.tar",
    )
    image = saved_image(base_ref, folder / "saved").with_layer(layer, "ADD nbc-pull /nbc-pull")
    return registry.add(f"nbc-pull-test/{token[:8]}", "1", image), token, image


@pytest.fixture
def user_image(
    runtime: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, list[str]]]:
    """A user catalog entry (its name) naming a registry ref given later (``refs``), which
    the test pulls: the image, if there, is removed afterwards."""
    monkeypatch.setenv("NBCONTAINERS_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("NBCONTAINERS_PROGRESS", "")  # the frontend decides, as for users
    refs: list[str] = []
    yield f"pulled-{uuid.uuid4().hex[:8]}", refs
    for ref in refs:
        runtime.remove_image(ref)
    shutil.rmtree(tmp_path / "saved", ignore_errors=True)  # hundreds of MB of layers


def _hung_up(registry: Registry, sends_before: int) -> None:
    """The engine hung up on the registry: every download it had begun ended unfinished, and
    it asks nothing more (no pull goes on in the background)."""
    deadline = time.monotonic() + 10
    while registry.in_flight() and time.monotonic() < deadline:
        time.sleep(0.1)
    sent = registry.sends[sends_before:]
    assert sent and not registry.in_flight(), sent
    assert any(s.dropped and s.sent < s.size for s in sent), sent
    asked = len(registry.requests)
    time.sleep(6)  # the engine retries a failed layer after 5 s, a cancelled pull never
    assert len(registry.requests) == asked, registry.requests[asked:]


def test_use_pulls_a_missing_registry_image_with_text_progress(
    registry: Registry,
    python_image: str,
    user_image: tuple[str, list[str]],
    runtime: Any,
    tmp_path: Path,
) -> None:
    name, refs = user_image
    ref, token, image = _served(registry, load_catalog()[python_image].ref, tmp_path, 4)
    refs.append(ref)
    register_user_image(name, {"ref": ref})
    assert runtime.image_info(ref) is None
    cells = ["%load_ext nbcontainers", f"%container use {name}"]
    nb = executed([*cells, "print(open('/nbc-pull/marker').read())"], tmp_path)
    used = cell_text(nb.cells[1])
    print(used)  # what the user reads, shown with -rP
    assert f"Image {name} ({ref}) is not on this engine: pulling it now." in used
    # Bytes as the engine downloads them and layers done; the layers the engine already
    # had (from an earlier run) are done without a byte, so the total is at least the new one.
    layers = len(image.layers)
    lines = re.findall(r"^  pulling (.*), (\d+)/(\d+) layers: (\d+)/(\d+) MiB$", used, re.M)
    assert lines and all(line[0] == ref for line in lines), used
    assert int(lines[-1][2]) == layers and int(lines[-1][1]) == layers, used
    assert lines[-1][3] == lines[-1][4] and int(lines[-1][4]) >= 4, used  # all there
    assert re.search(rf"^Pulled {re.escape(ref)} in \d+ s\.$", used, re.M), used
    assert f"Cells now run in container kernel {name!r}" in used
    assert cell_text(nb.cells[2]).strip() == token  # the next cell ran in the image just pulled
    assert runtime.image_info(ref) is not None
    extra = image.layers[-1].stat().st_size  # the new layer came from the registry, whole
    assert any(s.size == s.sent == extra and not s.dropped for s in registry.sends), registry.sends


def test_an_interrupt_cancels_the_pull_and_leaves_nothing(
    registry: Registry, user_image: tuple[str, list[str]], runtime: Any, tmp_path: Path
) -> None:
    name, refs = user_image
    ref, _, _ = _served(registry, "nbcontainers/base:bookworm", tmp_path, 8)
    refs.append(ref)
    register_user_image(name, {"ref": ref})
    containers_before = {s.id for s in runtime.list({})}
    sends_before = len(registry.sends)
    registry.rate = 256 << 10  # the random layer alone would take half a minute
    try:
        with notebook(tmp_path) as fe:
            # As JupyterLab sends it (the cell's id in the metadata): a widget bar, not lines;
            # interrupted while the engine is downloading a layer.
            def downloading() -> bool:
                sending = registry.sends[sends_before:]
                return any(s.sent > 256 << 10 and not s.done for s in sending)

            reply, outputs = fe.interrupted(f"%container use {name}", downloading, timeout=60)
            assert reply is not None, outputs
            assert reply["content"]["status"] == "error"
            assert reply["content"]["ename"] == "KeyboardInterrupt"
            streams = "".join(m["content"].get("text", "") for m in outputs)
            assert f"Image {name} ({ref}) is not on this engine: pulling it now." in streams
            assert re.search(
                r"Cancelled the pull after \d+ s: the image was not added\.", streams
            ), streams
            assert any(WIDGET_VIEW in m["content"].get("data", {}) for m in outputs)
            updates = [str(m["content"]["data"]) for m in outputs if m["msg_type"] == "comm_msg"]
            assert any(re.search(r"layers: \d+/\d+ MiB", u) for u in updates), updates
            assert fe.text("print('still here')") == "still here\n"
        _hung_up(registry, sends_before)
        assert runtime.image_info(ref) is None
        assert {s.id for s in runtime.list({})} <= containers_before  # no container left
    finally:
        registry.rate = 0
        registry.withdraw()  # before the fixture removes the image


def test_an_interrupt_while_progress_is_drawn_stops_the_engine_too(
    registry: Registry, runtime: Any, tmp_path: Path
) -> None:
    # Raised in the progress callback, outside the HTTP client's reads (which close their
    # connection on any exception), and kept alive by pytest's traceback as by IPython's.
    ref, _, _ = _served(registry, "nbcontainers/base:bookworm", tmp_path, 8)
    sends_before = len(registry.sends)
    registry.rate = 256 << 10

    def interrupt(what: str, done: int, total: int | None) -> None:
        if done > 256 << 10:
            raise KeyboardInterrupt

    try:
        with pytest.raises(KeyboardInterrupt) as interrupted:
            runtime.pull(ref, interrupt)
        _hung_up(registry, sends_before)
        assert runtime.image_info(ref) is None
        assert interrupted.traceback  # alive until here, as IPython keeps sys.last_traceback
    finally:
        registry.rate = 0
        registry.withdraw()
        runtime.remove_image(ref)
        shutil.rmtree(tmp_path / "saved", ignore_errors=True)
