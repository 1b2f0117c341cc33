"""What the image's build stage runs: the venv trim's keep/drop rules, and the skops model's
fast-loading copy answering as the skops load does."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nbcontainers.serving.image import load_model, write_fast_copy
from nbcontainers.serving.image.trim import keep_paths


def test_trim_keeps_used_packages_whole_and_drops_the_rest(tmp_path: Path) -> None:
    site = tmp_path / "site-packages"
    files = [
        "lib/__init__.py",
        "lib/core.py",
        "lib/lazy.py",  # a sibling of a used module: kept as margin
        "lib/core.pyi",  # for type checkers only
        "lib/sub/fast.pxd",  # for Cython only
        "lib/__pycache__/core.cpython-311.pyc",
        "lib/data/table.csv",  # data next to used code
        "lib/sub/__init__.py",
        "lib/sub/fast.so",
        "lib/unused/__init__.py",  # a subpackage nothing loaded from
        "lib/tests/test_core.py",
        "lib.libs/libblas.so",  # the dynamic linker's, no hook sees it
        "lib/native/libdeps.so",  # a folder of shared libraries alone: the linker's too
        "lib-1.0.dist-info/METADATA",
        "other/__init__.py",  # a distribution nothing imported
        "single.py",
        "used_single.py",
        "hack.pth",
    ]
    for rel in files:
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_text("x")
    used = {str(site / p) for p in ("lib/__init__.py", "lib/core.py", "lib/sub/fast.so")}
    used.add(str(site / "used_single.py"))
    keep, drop = keep_paths(site, used)
    dropped = sorted(p.relative_to(site).as_posix() for p in drop)
    assert dropped == [
        "lib/core.pyi",
        "lib/sub/fast.pxd",
        "lib/tests",
        "lib/unused",
        "other",
        "single.py",
    ]
    assert {p.name for p in keep} == {
        "lib",
        "lib.libs",
        "lib-1.0.dist-info",
        "used_single.py",
        "hack.pth",
    }


def test_a_skops_model_gets_a_fast_copy_that_answers_the_same(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    from nbcontainers.inkernel.serialize import export_object

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    clf = LogisticRegression().fit(X, X[:, 0] > 0)
    out = tmp_path / "out"
    out.mkdir()
    import json

    meta = json.loads(export_object({"clf": clf, "X": X}, "clf", "X[:4]", str(out), "{}"))
    assert meta["format"] == "skops", meta
    model = str(out / "model")
    assert write_fast_copy(model, meta, str(tmp_path / "cache"))
    assert (tmp_path / "cache" / "estimator.pkl").is_file()
    fast = load_model(model, meta, str(tmp_path / "cache"))
    slow = load_model(model, meta)
    np.testing.assert_array_equal(fast(X)[0], slow(X)[0])
    np.testing.assert_array_equal(fast(X)[0], clf.predict(X))
    assert not write_fast_copy(model, {**meta, "format": "source"}, str(tmp_path / "c2"))
