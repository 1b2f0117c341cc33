"""Container -> host session: `%export-serving` takes the model the kernel saved as the
kernel's bytes, nothing else.

The kernel saves the model into a folder both sides write (mode 0777: it may run as another
uid) and the host copies that folder into the export, whose Dockerfile COPYs it into the
serving image. A hostile kernel that saves a link instead of a weights file would have the
user's process copy a host file of its choosing into the folder and the image; a FIFO would
hang the export. Both are refused by name and nothing is written. The kernel here is a
stand-in doing what a hostile kernel can do to the folder (the attack is on the host's reads).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from nbcontainers.errors import ExportError
from nbcontainers.recipe.environment import Snapshot
from nbcontainers.runtimes.fake import FakeRuntime
from nbcontainers.serving import export as export_module

SECRET = b"host-only bytes the kernel must not choose to read 4711\n"
META = {"kind": "sklearn", "format": "skops", "python": "3.11", "requires": ["numpy"]}


def _evaluate(code: str, expression: str) -> Any:
    exec(code, {})  # the stand-in kernel is this process
    return eval(expression, {})


def _hostile(monkeypatch: pytest.MonkeyPatch, save: Any) -> None:
    def kernel_capture(evaluate: Any, name: str, out_dir: str, options: Any) -> dict[str, Any]:
        model = Path(out_dir) / "model"
        model.mkdir()
        (Path(out_dir) / "example.json").write_text(json.dumps({"inputs": []}))
        save(model)
        return dict(META)

    monkeypatch.setattr(export_module, "kernel_capture", kernel_capture)
    monkeypatch.setattr(export_module, "capture_kernel", lambda ev: Snapshot("3.11.2", ()))
    monkeypatch.setattr(export_module, "plan_lock", lambda *a, **k: ("numpy==2.0.0\n", None))


def _export(tmp_path: Path) -> Path:
    options = export_module.ExportOptions(folder=tmp_path / "out", build=False)
    work = tmp_path / "work"
    work.mkdir()
    done = export_module.export(
        _evaluate, "clf", options, work_dir=str(work), runtime=FakeRuntime(), say=lambda _: None
    )
    return done.folder


def test_a_link_saved_as_the_model_is_refused_not_followed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = tmp_path / "id_rsa"
    secret.write_bytes(SECRET)
    _hostile(monkeypatch, lambda model: (model / "model.skops").symlink_to(secret))
    with pytest.raises(ExportError, match=r"model\.skops.*link"):
        _export(tmp_path)
    assert not (tmp_path / "out").exists()


def test_a_linked_model_folder_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_rsa").write_bytes(SECRET)
    _hostile(monkeypatch, lambda model: (model / "sub").symlink_to(home / ".ssh"))
    with pytest.raises(ExportError, match=r"sub.*link"):
        _export(tmp_path)
    assert not (tmp_path / "out").exists()


def test_a_fifo_saved_as_the_model_is_refused_without_hanging(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _hostile(monkeypatch, lambda model: os.mkfifo(model / "model.skops"))
    with pytest.raises(ExportError, match=r"not a plain file"):
        _export(tmp_path)
    assert not (tmp_path / "out").exists()


def test_the_kernels_own_model_is_exported(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _hostile(monkeypatch, lambda model: (model / "model.skops").write_bytes(b"the model"))
    folder = _export(tmp_path)
    assert (folder / "model" / "model.skops").read_bytes() == b"the model"
    assert json.loads((folder / "example.json").read_text()) == {"inputs": []}
