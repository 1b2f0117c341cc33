"""Batching only where rows are independent: the export's probe, run on the live object in
the kernel, turns batching off for a model whose answer for a row depends on its neighbours
(normalisation across the batch), says why, and keeps it on where rows are independent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator
from sklearn.linear_model import LogisticRegression

from nbcontainers.inkernel.rows import rows_independent
from nbcontainers.inkernel.serialize import export_object
from nbcontainers.serving.export import batching_line

rng = np.random.default_rng(0)
X = rng.normal(size=(40, 4))
STEPS = np.arange(24.0).reshape(6, 4)  # increasing rows: reversed, the first row is the largest


class BatchNorm(BaseEstimator):  # type: ignore[misc]
    """Normalises each column by the batch's own statistics: one row's answer depends on
    every other row in the call."""

    def predict(self, X: Any) -> Any:
        return ((X - X.mean(0)) / (X.std(0) + 1e-6)).sum(1)


class NeighbourLeak(BaseEstimator):  # type: ignore[misc]
    """Independent within the example's own batch sizes unless a row far from the example's
    range joins it: only the changed-neighbours check sees it."""

    def predict(self, X: Any) -> Any:
        return X.sum(1) + (np.abs(X).max() > LIMIT)


LIMIT = float(np.abs(X[:6]).max()) + 0.01  # no row of the example passes it


def export(tmp_path: Path, obj: Any, example: str = "X[:6]", fmt: str = "auto") -> Any:
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    meta = json.loads(
        export_object({"m": obj, "X": X}, "m", example, str(out), json.dumps({"format": fmt}))
    )
    assert "error" not in meta, meta
    return meta


def test_rows_independent_model_keeps_batching(tmp_path: Path) -> None:
    clf = LogisticRegression().fit(X, X[:, 0] > 0)
    meta = export(tmp_path, clf)
    assert meta["batchable"] is True
    assert batching_line(meta).startswith("Batching on: on the example, each row answers")


def test_batch_normalising_model_turns_batching_off(tmp_path: Path) -> None:
    meta = export(tmp_path, BatchNorm(), fmt="pickle")
    assert meta["batchable"] is False
    assert "row 0 answers differently alone" in meta["batching"]
    line = batching_line(meta)
    assert line.startswith("Batching off: row 0") and "its own model call" in line


@pytest.mark.parametrize(
    ("call", "inputs", "why"),
    [
        (lambda b: b - b.mean(0), X[:6], "alone"),
        (lambda b: b.sum(1) + np.arange(len(b)), X[:6], "alone"),  # position matters
        # The same alone and in the example's order; another order changes every answer.
        (lambda b: b.sum(1) * (1 + (len(b) > 1 and b[0, 0] > b[-1, 0])), STEPS, "reordered"),
        (NeighbourLeak().predict, X[:6], "other rows in its batch"),
        (lambda b: b.sum(1), X[:1], "one row"),
        (lambda b: np.float64(b.sum()), X[:6], "one row per input row"),
        (lambda b: b.reshape(6, 4).sum(1), X[:6], "batches of another size"),
    ],
)
def test_probe_names_what_couples_the_rows(call: Any, inputs: Any, why: str) -> None:
    ok, reason = rows_independent(call, inputs, frame=False)
    assert not ok and why in reason, reason


def test_probe_accepts_independent_rows_of_any_kind() -> None:
    assert rows_independent(lambda b: b @ np.ones(4), X[:6], frame=False)[0]
    ints = rng.integers(0, 5, size=(6, 3))
    # Integer codes (an embedding index) are not scaled out of the model's range.
    table = np.arange(5.0)
    assert rows_independent(lambda b: table[b].sum(1), ints, frame=False)[0]
    frame = pd.DataFrame({"a": X[:6, 0], "b": list("xyzxyz")})
    assert rows_independent(lambda f: f["a"] * 2 + (f["b"] == "x"), frame, frame=True)[0]
    ok, reason = rows_independent(lambda f: f["a"] - f["a"].mean(), frame, frame=True)
    assert not ok and "alone" in reason
