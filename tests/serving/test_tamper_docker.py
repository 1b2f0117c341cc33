"""A model file that cannot be swapped, against a real build: an exported folder whose model
file is replaced by another model of the same types fails to build, the build's output
naming the file. On the unchanged code the image built, started and served the swapped
model's answers (the skops trust list and the fast copy took the file as it was)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest

from nbcontainers.catalog.build import build_image
from nbcontainers.catalog.entries import CatalogImage
from nbcontainers.errors import BuildError
from nbcontainers.serving import smoke

from ..drive import notebook
from .test_export_docker import TRAIN

pytestmark = pytest.mark.docker

SWAP = """
import skops.io as sio
from sklearn.linear_model import LogisticRegression
flipped = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, 1 - y)
sio.dump(flipped, 'clf/model/model.skops')  # the same types, the opposite answers
"""


def test_a_swapped_model_file_does_not_build(tmp_path: Path, runtime: Any) -> None:
    with notebook(tmp_path) as fe:
        fe.text(TRAIN)
        out = fe.text("%export-serving clf --example X[:4] --no-build --dir clf", timeout=300)
        assert "(sklearn, skops)" in out, out
        fe.text(SWAP)
    folder = tmp_path / "clf"
    meta = json.loads((folder / "model" / "meta.json").read_text())
    ref = "nbcontainers/serving-clf:tampered"
    image = CatalogImage(
        name="serving-clf",
        ref=ref,
        display_name="clf",
        source=folder,
        base=json.loads((folder / "export.json").read_text())["base"],
        user_defined=True,
    )
    lines: list[str] = []
    refused: BuildError | None = None
    try:
        try:
            build_image(image, runtime, on_line=lines.append)
        except BuildError as exc:
            refused = exc
        else:
            # Built: what does it serve? (the answer the attacker chose)
            served = smoke.start(runtime, ref, "clf")
            try:
                smoke.wait_ready(runtime, served)
                example = json.loads((folder / "example.json").read_text())
                reply = served.infer({"inputs": example["inputs"]})
                got = reply["outputs"][0]["data"]
            finally:
                runtime.stop(served.container_id, timeout=5)
                runtime.remove(served.container_id)
            pytest.fail(
                f"the swapped model built and served {got}; the notebook's answer was "
                f"{example['outputs'][0]['data']}"
            )
    finally:
        with contextlib.suppress(Exception):
            runtime.remove_image(ref)
    said = f"{refused}\n{refused.log_tail}\n" + "\n".join(lines)
    assert "model/model.skops changed since export" in said, said
    assert "Traceback" not in said, said
    assert meta["sha256"]["model.skops"]
