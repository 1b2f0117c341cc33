"""A model file that cannot be swapped: the export fixes the model files' SHA-256 (and skops'
trust list) from the live object; the image's loader and build-stage fast copy refuse a
changed, added or missing file with a message naming it, and the server reports it (503,
no traceback). `nbcontainers export` of a .skops file trusts what the user names, never
what the file asks to be trusted."""

from __future__ import annotations

import json
import operator
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import FunctionTransformer

from nbcontainers.errors import ExportError
from nbcontainers.inkernel.serialize import export_object
from nbcontainers.serving.image import Server, load_model, write_fast_copy
from nbcontainers.serving.image.loading import ModelRefused
from nbcontainers.serving.saved import load_model as load_saved

rng = np.random.default_rng(0)
X = rng.normal(size=(40, 3))


def exported(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """An exported skops model's folder and meta, as the image has them."""
    clf = LogisticRegression().fit(X, X[:, 0] > 0)
    out = tmp_path / "out"
    out.mkdir()
    meta = json.loads(export_object({"clf": clf, "X": X}, "clf", "X[:4]", str(out), "{}"))
    meta["name"] = "clf"
    (out / "model" / "meta.json").write_text(json.dumps(meta))
    return out / "model", meta


def swapped_in(model: Path) -> None:
    """Another model of the same types where the export's was: the poisoned-model swap."""
    flipped = LogisticRegression().fit(X, X[:, 0] < 0)
    (model / "model.skops").write_bytes(sio.dumps(flipped))


def test_the_export_fixes_the_digests_and_the_loader_checks_them(tmp_path: Path) -> None:
    model, meta = exported(tmp_path)
    assert set(meta["sha256"]) == {"model.skops"} and len(meta["sha256"]["model.skops"]) == 64
    assert load_model(str(model), meta)(X)[0].tolist() == (X[:, 0] > 0).tolist()


def test_a_swapped_model_file_refuses_to_load(tmp_path: Path) -> None:
    model, meta = exported(tmp_path)
    swapped_in(model)
    with pytest.raises(ModelRefused, match=r"model/model\.skops changed since export"):
        load_model(str(model), meta)
    # The build stage stops with the reason as its last line, not a traceback.
    with pytest.raises(SystemExit, match=r"nbcontainers: Refusing .*model/model\.skops"):
        write_fast_copy(str(model), meta, str(tmp_path / "cache"))
    assert not (tmp_path / "cache" / "estimator.pkl").exists()


def test_an_untrusted_type_is_refused_by_name(tmp_path: Path) -> None:
    model, meta = exported(tmp_path)
    # The attacker also fixed the digest: skops' trust list, fixed at export, still holds.
    evil = sio.dumps(FunctionTransformer(operator.methodcaller).fit(X))
    (model / "model.skops").write_bytes(evil)
    meta["sha256"]["model.skops"] = __import__("hashlib").sha256(evil).hexdigest()
    with pytest.raises(ModelRefused, match=r"did not trust: operator\.methodcaller"):
        load_model(str(model), meta)


def test_added_and_missing_files_are_refused(tmp_path: Path) -> None:
    model, meta = exported(tmp_path)
    (model / "model_code.py").write_text("import os\n")
    with pytest.raises(ModelRefused, match=r"model/model_code\.py is not a file the export"):
        load_model(str(model), meta)
    (model / "model_code.py").unlink()
    shutil.move(model / "model.skops", tmp_path / "elsewhere")
    with pytest.raises(ModelRefused, match=r"model/model\.skops is missing"):
        load_model(str(model), meta)


def test_the_server_says_why_and_stays_unready(tmp_path: Path) -> None:
    model, _ = exported(tmp_path)
    swapped_in(model)
    server = Server(str(model))
    server.load()
    assert server.predict is None
    status, body, _ = server._ready()
    assert status == 503 and "model/model.skops changed since export" in body["error"]
    assert "Traceback" not in body["error"]


def test_the_cli_trusts_what_the_user_names_not_the_file(tmp_path: Path) -> None:
    path = tmp_path / "model.skops"
    sio.dump(FunctionTransformer(operator.methodcaller).fit(X), path)
    with pytest.raises(ExportError, match=r"--trust operator\.methodcaller"):
        load_saved(str(path), "auto")
    assert load_saved(str(path), "auto", ["operator.methodcaller"])[0] == "model"
    # scikit-learn's own classes need no --trust (a forest's Tree is not in skops' defaults).
    from sklearn.ensemble import RandomForestClassifier

    sio.dump(RandomForestClassifier(3, random_state=0).fit(X, X[:, 0] > 0), path)
    assert load_saved(str(path), "auto")[0] == "model"


def test_the_cli_refuses_untrusted_types_with_the_fix(tmp_path: Path, monkeypatch: Any) -> None:
    from click.testing import CliRunner

    from nbcontainers.cli import main

    monkeypatch.chdir(tmp_path)
    sio.dump(FunctionTransformer(operator.methodcaller).fit(X), tmp_path / "m.skops")
    np.save(tmp_path / "x.npy", X[:4])
    done = CliRunner().invoke(main, ["export", "m.skops", "--example", "x.npy", "--no-build"])
    assert done.exit_code == ExportError.exit_code, done.output
    assert "Error: m.skops holds types skops does not trust by default: operator." in done.output
    assert "--trust operator.methodcaller" in done.output
    assert not (tmp_path / "serving-m").exists()
