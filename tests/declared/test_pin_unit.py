"""`%container pin` (magics/pin.py) without an engine: what it writes for each kind of image,
into the file (atomically, the rest kept) and as its output, and what it refuses."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from IPython.core.error import UsageError

from nbcontainers.catalog.entries import CatalogImage, load_catalog
from nbcontainers.kernels.declared import PIN_MIMETYPE, read_declaration
from nbcontainers.magics import pin as pin_module
from nbcontainers.magics.pin import pin, pinned_metadata, write_pin
from nbcontainers.runtimes.base import ImageInfo
from nbcontainers.runtimes.fake import FakeRuntime

from .saving import mid_save

DIGEST = "sha256:" + "ab" * 32


@pytest.fixture(autouse=True)
def own_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBCONTAINERS_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("NBCONTAINERS_IMAGE", raising=False)
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "jupyter-data"))


@pytest.fixture
def shown(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    outputs: list[dict[str, Any]] = []
    monkeypatch.setattr("IPython.display.display", lambda data, raw: outputs.append(data))
    return outputs


def notebook(path: Path) -> Path:
    nb = {
        "cells": [
            {"cell_type": "markdown", "id": "c1", "metadata": {}, "source": ["# Über\n", "x"]}
        ],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path.write_text(json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    return path


def relay_shell(image: CatalogImage, runtime: FakeRuntime, session: str, **config: Any) -> Any:
    """A shell whose notebook has one `%container use` kernel of ``image`` (the magics' state
    with a real NotebookState's lookup, the relay session's description of the kernel)."""
    from nbcontainers.magics.state import NotebookState

    spec = SimpleNamespace(
        metadata={"kernel_provisioner": {"config": {"image": image.name, **config}}}
    )
    relay = SimpleNamespace(name=image.name)
    state = NotebookState.__new__(NotebookState)
    state.relays, state.active = {image.name: relay}, image.name
    state.kernels = SimpleNamespace(  # type: ignore[assignment]
        describe=lambda r: (SimpleNamespace(spec=spec), image, runtime)
    )
    shell = SimpleNamespace(user_ns={"__session__": session})
    shell._nbcontainers_magics = SimpleNamespace(state=state)  # type: ignore[attr-defined]
    return shell


def test_what_each_kind_of_image_pins_to(tmp_path: Path) -> None:
    python = load_catalog()["python"]
    built = ImageInfo(DIGEST, (python.ref,), (), {}, 1, "")
    assert pinned_metadata(python, built, None, "", 0.0) == {"image": "python", "digest": DIGEST}
    # A registry image pulled by tag is pinned by the digest its registry gave it.
    tagged = CatalogImage("mine", "127.0.0.1:5000/team/x:1", "x", user_defined=True)
    pulled = ImageInfo(
        DIGEST, (tagged.ref,), (f"127.0.0.1:5000/team/x@{'sha256:' + 'ef' * 32}",), {}, 1, ""
    )
    assert pinned_metadata(tagged, pulled, None, "", 0.0) == {
        "image": f"127.0.0.1:5000/team/x@sha256:{'ef' * 32}"
    }
    ref = f"127.0.0.1:5000/x@{DIGEST}"
    by_ref = CatalogImage("pinned-x", ref, "x", user_defined=True)
    assert pinned_metadata(by_ref, built, 1, "8g", 2.0) == {
        "image": ref, "gpus": 1, "mem_limit": "8g", "cpus": 2.0,
    }  # fmt: skip
    env = tmp_path / "env"
    env.mkdir()
    (env / "environment.json").write_text("{}")
    (env / "requirements.lock").write_text("numpy==2.0.0\n")
    snap = CatalogImage(
        "snapshot-env", "nbcontainers/snapshot-env:1", "s", source=env, user_defined=True
    )
    import hashlib

    assert pinned_metadata(snap, built, None, "", 0.0) == {
        "snapshot": str(env), "lock_sha256": hashlib.sha256(b"numpy==2.0.0\n").hexdigest(),
    }  # fmt: skip


def test_pin_writes_the_file_and_shows_the_same_as_output(
    tmp_path: Path, shown: list[dict[str, Any]]
) -> None:
    nb = notebook(tmp_path / "nb.ipynb")
    before = json.loads(nb.read_text())
    image = load_catalog()["pytorch-cpu"]
    runtime = FakeRuntime(images=[image.ref])
    info = runtime.image_info(image.ref)
    assert info is not None
    pin(relay_shell(image, runtime, str(nb), mem_limit="1g"), [])
    after = json.loads(nb.read_text())
    pinned = {"image": "pytorch-cpu", "digest": info.id, "mem_limit": "1g"}
    assert after["metadata"].pop("nbcontainers") == pinned
    assert after == before  # nothing else changed, the non-ASCII cell included
    assert "Über" in nb.read_text()  # written as nbformat writes it, not \u-escaped
    assert not list(tmp_path.glob(".nb.ipynb.*"))  # no temporary file left
    assert shown[-1][PIN_MIMETYPE] == pinned
    assert f"Written to {nb}" in shown[-1]["text/plain"]
    decl, note = read_declaration(nb, "python")
    assert (decl.image, decl.digest, decl.mem_limit, note) == ("pytorch-cpu", info.id, "1g", None)


def test_a_relative_session_path_and_a_snapshot_relative_to_it(
    tmp_path: Path, shown: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    nb = notebook(tmp_path / "nb.ipynb")
    env = tmp_path / "env"
    env.mkdir()
    (env / "environment.json").write_text("{}")
    (env / "Dockerfile").write_text("FROM scratch\n")
    snap = CatalogImage(
        "snapshot-env", "nbcontainers/snapshot-env:1", "s", source=env, user_defined=True
    )
    monkeypatch.chdir(tmp_path)
    pin(relay_shell(snap, FakeRuntime(), "nb.ipynb"), [])
    assert json.loads(nb.read_text())["metadata"]["nbcontainers"] == {"snapshot": "env"}


def test_without_a_notebook_path_the_output_alone_carries_it(
    tmp_path: Path, shown: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    image = load_catalog()["python"]
    pin(relay_shell(image, FakeRuntime(images=[image.ref]), ""), [])
    assert shown[-1][PIN_MIMETYPE]["image"] == "python"
    assert "Not written to a file" in shown[-1]["text/plain"]
    assert "--notebook PATH" in shown[-1]["text/plain"]


def test_pin_refuses_clearly(tmp_path: Path, shown: list[dict[str, Any]]) -> None:
    bare = SimpleNamespace(user_ns={})
    with pytest.raises(
        UsageError, match="No container kernel to pin: start one with `%container use"
    ):
        pin(bare, [])
    with pytest.raises(UsageError, match=r"%container: unrecognized arguments: --what"):
        pin(bare, ["--what"])
    image = load_catalog()["python"]
    shell = relay_shell(image, FakeRuntime(images=[image.ref]), "")
    with pytest.raises(UsageError, match="No container kernel 'torch' in this notebook"):
        pin(shell, ["torch"])
    with pytest.raises(UsageError, match=r"no such \.ipynb file"):
        pin(shell, ["--notebook", str(tmp_path / "gone.ipynb")])
    assert not shown


def test_in_a_kernel_of_an_nbc_kernelspec_it_pins_its_own_image(
    tmp_path: Path, shown: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    nb = notebook(tmp_path / "nb.ipynb")
    monkeypatch.setenv("NBCONTAINERS_IMAGE", "python")
    monkeypatch.setenv("NBCONTAINERS_IMAGE_ID", DIGEST)
    pin(SimpleNamespace(user_ns={"__session__": str(nb)}), [])
    assert json.loads(nb.read_text())["metadata"]["nbcontainers"] == {
        "image": "python",
        "digest": DIGEST,
    }


def test_a_file_that_is_no_notebook_is_left_alone(tmp_path: Path) -> None:
    bad = tmp_path / "bad.ipynb"
    bad.write_text("[1, 2]")
    with pytest.raises(UsageError, match="is not a notebook"):
        write_pin(bad, {"image": "python"})
    assert bad.read_text() == "[1, 2]"
    assert pin_module.__doc__ and "Reload Notebook from Disk" in pin_module.__doc__


def test_a_pin_into_a_notebook_being_saved_waits_for_the_save(tmp_path: Path) -> None:
    """The frontend's save rewrites the file in place; a pin that read it cut refused
    ("Cannot read ... to pin into it") on the old code."""
    path = notebook(tmp_path / "nb.ipynb")
    with mid_save(path):
        write_pin(path, {"image": "python"})
    written = json.loads(path.read_text())
    assert written["metadata"]["nbcontainers"] == {"image": "python"}
    assert written["metadata"]["kernelspec"]["name"] == "python3"  # the rest is kept


def test_a_trusted_notebook_stays_trusted_and_an_untrusted_one_is_not_made_so(
    tmp_path: Path,
) -> None:
    import nbformat
    from nbformat.sign import NotebookNotary

    from nbcontainers.kernels.declared import notebook_trusted

    def trusted(path: Path) -> bool:
        return notebook_trusted(json.loads(path.read_text()))

    mine = notebook(tmp_path / "mine.ipynb")
    NotebookNotary().sign(nbformat.read(mine, as_version=4))
    assert trusted(mine)
    write_pin(mine, {"image": f"127.0.0.1:5000/x@{DIGEST}"})
    assert trusted(mine)  # re-signed: its own pin does not make the user's notebook suspect
    theirs = notebook(tmp_path / "theirs.ipynb")
    theirs.write_text(theirs.read_text().replace("Über", "Someone else's"))  # other content
    write_pin(theirs, {"image": f"127.0.0.1:5000/x@{DIGEST}"})
    assert not trusted(theirs)
