"""A snapshot folder registered as a catalog image (what `%container snapshot --build` and
`%container use ./DIR` do), read back by the catalog."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from nbcontainers.catalog.entries import load_catalog
from nbcontainers.magics.snapshot import register_snapshot_image
from nbcontainers.snapshot import snapshot_image


def test_a_registered_snapshot_is_a_catalog_image(tmp_path: Path, config_dir: Path) -> None:
    folder = tmp_path / "My Env"
    folder.mkdir()
    (folder / "Dockerfile").write_text("FROM scratch\n")
    assert register_snapshot_image(folder) == "snapshot-my-env"
    assert json.loads((config_dir / "images.json").read_text()) == {
        "images": {
            "snapshot-my-env": {"build": str(folder), "display_name": "Snapshot My Env (container)"}
        }
    }
    image = load_catalog()["snapshot-my-env"]
    assert image.ref == snapshot_image(folder).ref and image.source == folder
    assert image.user_defined and image.display_name == "Snapshot My Env (container)"


def test_registering_again_keeps_the_users_other_images(tmp_path: Path, config_dir: Path) -> None:
    config_dir.mkdir()
    mine = {"ref": "me/tools:1", "display_name": "My tools"}
    (config_dir / "images.json").write_text(json.dumps({"images": {"tools": mine}}))
    folder = tmp_path / "env"
    folder.mkdir()
    register_snapshot_image(folder)
    register_snapshot_image(folder)
    images = json.loads((config_dir / "images.json").read_text())["images"]
    assert sorted(images) == ["snapshot-env", "tools"] and images["tools"] == mine


def snapshot_folder(where: Path) -> Path:
    from nbcontainers.snapshot import MARKER

    where.mkdir()
    (where / "Dockerfile").write_text('FROM scratch\nLABEL io.nbcontainers.image="x"\n')
    (where / "environment.json").write_text(json.dumps({"kind": MARKER, "packages": []}))
    return where


def test_use_of_a_snapshot_folder_builds_it_once_and_registers_it(
    tmp_path: Path,
    config_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from nbcontainers.magics.snapshot import snapshot_folder_image
    from nbcontainers.runtimes.fake import FakeRuntime

    engine = FakeRuntime()
    monkeypatch.setattr("nbcontainers.runtimes.get_runtime", lambda name="auto": engine)
    monkeypatch.chdir(tmp_path)
    folder = snapshot_folder(tmp_path / "env")
    ref = snapshot_image(folder).ref
    assert snapshot_folder_image("./env") == "snapshot-env"
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (
        f"Image snapshot-env ({ref}) is not built yet: building it now with in-memory. "
        "Interrupt the cell to cancel."
    )
    assert out[1].startswith("  [1/") and "FROM" in out[1]  # the build's steps, as text
    assert re.fullmatch(rf"Built {re.escape(ref)} in \d+ s\.", out[-1])
    assert engine.image_info(ref) is not None and len(engine.builds) == 1
    assert load_catalog()["snapshot-env"].ref == ref
    assert snapshot_folder_image(str(folder)) == "snapshot-env"  # present: no second build
    assert capsys.readouterr().out == "" and len(engine.builds) == 1


def test_snapshot_build_registers_only_a_matching_rebuild(
    shell: InteractiveShell,
    tmp_path: Path,
    config_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import nbcontainers.snapshot as snapshot_module
    from nbcontainers.runtimes.fake import FakeRuntime

    engine = FakeRuntime()
    monkeypatch.setattr("nbcontainers.runtimes.get_runtime", lambda name="auto": engine)
    monkeypatch.chdir(tmp_path)
    taken: dict[str, Any] = {}

    def take_snapshot(evaluate: Any, folder: Path, **kw: Any) -> tuple[Path, str]:
        taken.update(kw, folder=folder)
        folder.mkdir()
        (folder / "environment.json").write_text('{"packages": [1, 2]}')
        return folder, "the snapshot"

    differences: list[str] = []
    monkeypatch.setattr(snapshot_module, "take_snapshot", take_snapshot)
    monkeypatch.setattr(
        snapshot_module,
        "build_and_verify",
        lambda folder, snap, rt, on_event: ("img:1", differences),
    )
    shell.run_line_magic("container", "snapshot env --build --minimal")
    assert taken["folder"] == tmp_path / "env" and taken["minimal"] and not taken["vendor_all"]
    assert taken["image_ref"] is None and taken["runtime"] is engine  # the local kernel
    assert capsys.readouterr().out.splitlines() == [
        f"Snapshot of the local kernel written to {tmp_path / 'env'} (2 distributions). "
        f"Rebuild it with `docker build {tmp_path / 'env'}`.",
        "Rebuilding env to compare its packages with the live kernel. "
        "Interrupt the cell to cancel.",
        "Rebuilt and compared in 0 s.",
        "Built img:1: its packages match the live kernel (0 differences).",
        "Registered as image 'snapshot-env': `%container use snapshot-env`.",
    ]
    assert "snapshot-env" in load_catalog()
    differences.append("numpy: 2.0 live, 1.26 rebuilt")
    (config_dir / "images.json").unlink()
    with pytest.raises(UsageError) as caught:
        shell.run_line_magic("container", "snapshot env2 --build")
    assert str(caught.value) == (
        "The rebuilt image differs from the live kernel:\n  numpy: 2.0 live, 1.26 rebuilt"
    )
    assert "snapshot-env2" not in load_catalog()
