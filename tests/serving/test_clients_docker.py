"""A real exported iris image (built once per session, removed after) answers the clients
Open Inference Protocol users reach for: tritonclient.http in its default binary mode and
in JSON, tritonclient.grpc with --grpc, and the kserve package's REST and gRPC clients;
malformed requests get 4xx and it keeps serving."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from nbcontainers.serving import smoke

pytestmark = pytest.mark.docker


# `iris` (the image, built once per session) is in conftest.py.


@pytest.fixture(scope="module")
def served(runtime: Any, iris: dict[str, Any]) -> Iterator[smoke.Served]:
    server = smoke.start(runtime, iris["image"], "iris", grpc=True)
    try:
        smoke.wait_ready(runtime, server)
        yield server
    finally:
        runtime.stop(server.container_id, timeout=5)
        runtime.remove(server.container_id)


def test_tritonclient_http_binary_and_json(served: smoke.Served, iris: dict[str, Any]) -> None:
    x = iris["X"][10:20]
    want = iris["model"].predict(x)
    client = triton.InferenceServerClient(served.url.removeprefix("http://"))
    assert client.is_server_live() and client.is_model_ready("iris")
    meta = client.get_model_metadata("iris")
    assert meta["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}]
    for binary in (True, False):
        item = triton.InferInput("input-0", list(x.shape), "FP64")
        item.set_data_from_numpy(x, binary_data=binary)
        # No outputs named: tritonclient asks for binary outputs; named ones say each.
        for outputs in (None, [triton.InferRequestedOutput("output-0", binary_data=binary)]):
            result = client.infer("iris", [item], outputs=outputs, request_id="r7")
            np.testing.assert_array_equal(result.as_numpy("output-0"), want)
            assert result.get_response()["id"] == "r7"
    with pytest.raises(InferenceServerException, match=r"it takes 'input-0' \(FP64"):
        wrong = triton.InferInput("features", list(x.shape), "FP64")
        wrong.set_data_from_numpy(x)
        client.infer("iris", [wrong])


def post(url: str, raw: bytes) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=raw), timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_malformed_bodies_are_4xx_and_it_keeps_serving(served: smoke.Served) -> None:
    infer = f"{served.url}/v2/models/iris/infer"
    good = {"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]}
    for raw, status, text in (
        (b"[" * 10_000, 400, "nests 10000 deep"),
        (json.dumps({"inputs": [good | {"shape": [-1, 4]}]}).encode(), 400, "concrete"),
        (json.dumps({"inputs": [good | {"name": "x"}]}).encode(), 400, "'input-0' (FP64"),
        (b"\xf6" * 100, 400, "not JSON"),
    ):
        got, body = post(infer, raw)
        assert got == status and text in json.loads(body)["error"], (got, body)
    got, body = post(infer, json.dumps({"inputs": [good]}).encode())
    assert got == 200 and json.loads(body)["outputs"][0]["data"] == [0]


GRPC_CLIENT = """
import json, sys, numpy as np, tritonclient.grpc as g
x = np.asarray(json.loads(sys.argv[2]))
client = g.InferenceServerClient(sys.argv[1])
assert client.is_server_live() and client.is_model_ready("iris")
item = g.InferInput("input-0", list(x.shape), "FP64")
item.set_data_from_numpy(x)
print(json.dumps(client.infer("iris", [item]).as_numpy("output-0").tolist()))
"""


def test_tritonclient_grpc(served: smoke.Served, iris: dict[str, Any]) -> None:
    x = iris["X"][30:40]
    assert served.grpc is not None
    # A child process: grpc's threads in this one upset CPython 3.11's ast (test_protocol.py).
    done = subprocess.run(
        [sys.executable, "-c", GRPC_CLIENT, served.grpc, json.dumps(x.tolist())],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == iris["model"].predict(x).tolist()


ROOT = Path(__file__).resolve().parents[2]
KSERVE_PYTHON = ROOT / ".venv-kserve" / "bin" / "python"  # scripts/ensure-kserve-client.sh


@pytest.fixture(scope="session")
def kserve_python() -> Path:
    if not KSERVE_PYTHON.exists():
        why = f"no {KSERVE_PYTHON}: run scripts/ensure-kserve-client.sh (make test does)"
        if os.environ.get("NBCONTAINERS_REQUIRE_DOCKER") == "1":
            pytest.fail(why)
        pytest.skip(why)
    return KSERVE_PYTHON


# kserve_python first: a missing venv is said before the image is built.
def test_kserve_clients(kserve_python: Path, served: smoke.Served, iris: dict[str, Any]) -> None:
    x = iris["X"][40:60]
    assert served.grpc is not None
    # kserve pins pandas<3 and psutil<6: it has a venv of its own, so a process of its own.
    done = subprocess.run(
        [str(kserve_python), str(Path(__file__).with_name("kserve_client.py")),
         served.url, served.grpc, "iris", json.dumps(x.tolist())],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout)
    for probe in ("live", "ready", "model_ready"):
        assert got[f"rest_{probe}"] is True and got[f"grpc_{probe}"] is True, (probe, got)
    want = iris["model"].predict(x).tolist()
    for rid in ("kserve-json", "kserve-binary", "kserve-grpc"):
        assert got[rid].pop("binary_reply", False) is (rid == "kserve-binary"), rid
        assert got[rid] == {"id": rid, "output": want, "name": "output-0"}, rid


def test_labels_describe_and_do_not_leak(runtime: Any, iris: dict[str, Any]) -> None:
    labels = runtime.image_info(iris["image"]).labels
    assert labels["org.opencontainers.image.title"] == "iris"
    # The export folder is no git checkout: no source URL, and never a local path.
    assert "org.opencontainers.image.source" not in labels
    assert str(Path(iris["folder"])) not in json.dumps(labels)
