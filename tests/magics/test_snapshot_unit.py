"""A snapshot folder registered as a catalog image (what `%container snapshot --build` and
`%container use ./DIR` do), read back by the catalog."""

from __future__ import annotations

import json
from pathlib import Path

from nbcontainers.catalog import load_catalog
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
