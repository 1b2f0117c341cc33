from __future__ import annotations

import difflib
import json
from pathlib import Path

import pytest

from nbcontainers.catalog.entries import catalog_path, load_catalog, render_catalog
from nbcontainers.catalog.kernelspecs import kernel_json
from nbcontainers.errors import ConfigError, UnknownImage

REPO = Path(__file__).resolve().parent.parent


def test_catalog_json_matches_image_sources() -> None:
    expected, actual = render_catalog(), catalog_path().read_text()
    if expected != actual:
        diff = "".join(
            difflib.unified_diff(
                actual.splitlines(True),
                expected.splitlines(True),
                "images/catalog.json",
                "as generated",
            )
        )
        pytest.fail("images/catalog.json drifted; run `nbcontainers images regenerate`:\n" + diff)


def test_generated_kernelspecs_match_catalog() -> None:
    for image in load_catalog(include_user=False).values():
        path = REPO / "kernelspecs" / image.kernel_name / "kernel.json"
        assert json.loads(path.read_text()) == kernel_json(image), (
            f"{path} drifted; run `nbcontainers images regenerate`"
        )


def test_catalog_has_the_required_images_pinned() -> None:
    catalog = load_catalog(include_user=False)
    assert {"python", "pytorch-cpu", "pytorch-gpu"} <= set(catalog)
    for image in catalog.values():
        assert image.base and "@sha256:" in image.base, image.name
        assert image.buildable
        lock = (image.source / "requirements.lock").read_text()  # type: ignore[operator]
        assert "--hash=sha256:" in lock
    gpu = catalog["pytorch-gpu"]
    assert gpu.gpu and gpu.cuda and gpu.cpu_variant == "pytorch-cpu"
    assert catalog["pytorch-cpu"].packages["torch"].endswith("+cpu")


def test_lookup_accepts_kernel_names_and_suggests() -> None:
    catalog = load_catalog(include_user=False)
    assert catalog["nbc-python"].name == "python"
    with pytest.raises(UnknownImage, match="Did you mean 'pytorch-gpu'"):
        catalog["pytorch-gp"]


def test_user_images(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBCONTAINERS_CONFIG_DIR", str(tmp_path))
    (tmp_path / "images.json").write_text(
        json.dumps({"images": {"mine": {"ref": "me/img:1", "display_name": "Mine", "gpu": False}}})
    )
    image = load_catalog()["mine"]
    assert image.ref == "me/img:1" and image.user_defined and not image.buildable


def test_user_images_bad_key_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBCONTAINERS_CONFIG_DIR", str(tmp_path))
    (tmp_path / "images.json").write_text(json.dumps({"images": {"mine": {"reff": "x"}}}))
    with pytest.raises(ConfigError, match=r"unknown key\(s\) reff.*Valid keys: build"):
        load_catalog()


def test_user_images_bad_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBCONTAINERS_CONFIG_DIR", str(tmp_path))
    (tmp_path / "images.json").write_text("{not json")
    with pytest.raises(ConfigError, match="is not valid JSON"):
        load_catalog()


def test_register_user_image_refuses_what_the_catalog_could_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nbcontainers.catalog.entries import register_user_image, user_config_path

    monkeypatch.setenv("NBCONTAINERS_CONFIG_DIR", str(tmp_path))
    with pytest.raises(ConfigError, match="lowercase"):
        register_user_image("My Image", {"ref": "me/x:1"})
    with pytest.raises(ConfigError, match=r"unknown key\(s\) tag\. Valid keys: build, "):
        register_user_image("mine", {"tag": "me/x:1"})
    user_config_path().write_text("{not json")
    with pytest.raises(ConfigError, match="is not valid JSON"):
        register_user_image("mine", {"ref": "me/x:1"})
    user_config_path().write_text('["a list"]')
    with pytest.raises(ConfigError, match="must look like"):
        register_user_image("mine", {"ref": "me/x:1"})
    assert user_config_path().read_text() == '["a list"]'  # never overwritten
    user_config_path().unlink()
    assert register_user_image("mine", {"ref": "me/x:1"}) == user_config_path()
    assert load_catalog()["mine"].ref == "me/x:1"


def test_a_user_image_never_shadows_a_catalog_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nbcontainers.catalog.entries import register_user_image, user_config_path

    monkeypatch.setenv("NBCONTAINERS_CONFIG_DIR", str(tmp_path))
    for name in ("python", "nbc-python"):
        with pytest.raises(ConfigError, match=rf"'{name}' would redefine 'python'.*Rename it"):
            register_user_image(name, {"ref": "evil.example/py:1"})
    assert not user_config_path().exists()  # nothing written
    register_user_image("python-mine", {"ref": "me/py:1"})  # a new name is fine
    assert load_catalog()["python"].ref != "me/py:1"
    assert load_catalog(shipped=True).keys() == load_catalog(include_user=False).keys()
