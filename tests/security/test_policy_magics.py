"""user ↔ admin policy through `%container use`: an image the admin did not allow is refused
before the engine sees it. On main `ensure_in_cell` pulled (or built) the missing image first
and only the kernel start refused it: the registry image was on the engine by then (seen: the
pull was called)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from IPython.core.error import UsageError

from nbcontainers.catalog.entries import CatalogImage
from nbcontainers.kernels import policy
from nbcontainers.magics.missing import ensure_in_cell


class Engine:
    """An engine that has no images and records what it was asked to fetch."""

    def __init__(self) -> None:
        self.fetched: list[str] = []

    def image_info(self, ref: str) -> None:
        return None

    def ping(self) -> Any:
        return type("Facts", (), {"rootless": False})()

    def builder(self) -> str:
        return "test"

    def pull(self, ref: str, on_progress: Any = None) -> None:
        self.fetched.append(ref)


@pytest.fixture
def admin_allows_python_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps({"allowed_images": ["python"]}))
    path.chmod(0o644)
    monkeypatch.setattr(policy, "POLICY_FILE", path)


def test_a_registry_image_the_admin_did_not_allow_is_never_pulled(admin_allows_python_only):
    engine = Engine()
    image = CatalogImage("evil", "evil.example/miner:1", "Evil", user_defined=True)
    with pytest.raises(UsageError, match="allowed_images"):
        ensure_in_cell(None, image, engine)  # type: ignore[arg-type]
    assert engine.fetched == []


def test_an_allowed_image_is_still_fetched(admin_allows_python_only):
    from nbcontainers.catalog.entries import load_catalog

    python = load_catalog(include_user=False, shipped=True)["python"]
    python = CatalogImage(python.name, python.ref, python.display_name)  # not buildable here
    engine = Engine()
    ensure_in_cell(None, python, engine)  # type: ignore[arg-type]
    assert engine.fetched == [python.ref]
