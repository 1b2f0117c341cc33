"""Batches never couple clients, against the real image: a model that normalises across its
batch is exported with batching off (the export says so, meta.json says so), and rows that
two clients send at the same moment get the answers each gets alone. On the unchanged code
the server joined concurrent clients' rows into one model call, and each client's answer
depended on the others' inputs."""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..drive import notebook
from .test_export_docker import http

pytestmark = pytest.mark.docker

MODEL = """
import time
import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import make_pipeline
class BatchScaler(TransformerMixin, BaseEstimator):
    # Each column scaled by the batch's own statistics, as a torch BatchNorm left in training
    # mode does: a row's answer depends on every other row in the call.
    def fit(self, X, y=None):
        return self
    def transform(self, X):
        time.sleep(0.05)  # long enough that concurrent requests queue behind each call
        return (X - X.mean(0)) / (X.std(0) + 1e-6)
rng = np.random.default_rng(0)
X = rng.normal(size=(32, 4))
bn = make_pipeline(BatchScaler(), LinearRegression()).fit(X, X @ np.arange(1.0, 5.0))
"""


def test_a_batch_normalising_model_is_never_batched_across_clients(tmp_path: Path) -> None:
    with notebook(tmp_path) as fe, _removing_image(tmp_path / "serving-bn"):
        fe.text(MODEL)
        out = fe.text(
            "server = %export-serving bn --example X[:8] --format pickle --run", timeout=600
        )
        assert "Smoke test passed" in out, out
        try:
            url = fe.text("print(server.url)").strip()
            rows = json.loads(fe.text("import json; print(json.dumps(X[:16].tolist()))"))

            # Each client's row alone, one request at a time: the answer it should get.
            alone = [http(url + "/predict", {"instances": [row]}) for row in rows]
            assert all(status == 200 for status, _ in alone), alone

            # The same rows from 16 clients at once: queued behind one another's calls.
            together: list[Any] = [None] * len(rows)
            start = threading.Barrier(len(rows))

            def client(i: int) -> None:
                start.wait()
                together[i] = http(url + "/predict", {"instances": [rows[i]]})

            threads = [threading.Thread(target=client, args=(i,)) for i in range(len(rows))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            coupled = [i for i in range(len(rows)) if together[i] != alone[i]]
            assert not coupled, (
                f"clients {coupled} got answers that depend on other clients' rows: "
                f"{[together[i] for i in coupled][:4]} instead of {[alone[i] for i in coupled][:4]}"
            )
            assert "Batching off: row 0 answers differently alone" in out, out
        finally:
            fe.text("server.stop()")
    meta = json.loads((tmp_path / "serving-bn" / "model" / "meta.json").read_text())
    assert meta["batchable"] is False and "alone" in meta["batching"]


@contextlib.contextmanager
def _removing_image(folder: Path) -> Iterator[None]:
    """Remove the image the export in ``folder`` built, whatever happened in between."""
    try:
        yield
    finally:
        with contextlib.suppress(OSError, ValueError, KeyError):
            image = json.loads((folder / "export.json").read_text())["image"]
            subprocess.run(["docker", "image", "rm", "-f", image], capture_output=True)
