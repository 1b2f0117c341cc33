"""`%export-serving` against a real engine: a scikit-learn model from the local kernel and a
torch model from a container kernel become images whose answers match the notebook's; the
server rejects bad requests with 4xx and keeps serving; bad input loses nothing."""

from __future__ import annotations

import json
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nbcontainers.catalog.entries import load_catalog
from nbcontainers.runtimes.base import ContainerSpec, Mount

from ..drive import Frontend, notebook

pytestmark = pytest.mark.docker

TOKEN = "planted-token-77c1e0"

TRAIN = """
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
rng = np.random.default_rng(0)
X = rng.normal(size=(200, 4)); y = (X[:, 0] + X[:, 1] > 0).astype(int)
clf = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
"""


def http(
    url: str, body: Any = None, raw: bytes | None = None, method: str | None = None
) -> tuple[int, Any]:
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as reply:
            text = reply.read().decode()
            status = reply.status
    except urllib.error.HTTPError as exc:
        text, status = exc.read().decode(), exc.code
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


@pytest.fixture
def local_nb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Frontend]:
    monkeypatch.setenv("MY_API_TOKEN", TOKEN)
    with notebook(tmp_path) as fe:
        fe.text(TRAIN)
        yield fe


def test_sklearn_round_trip_and_server_behaviour(
    local_nb: Frontend, tmp_path: Path, runtime: Any
) -> None:
    out = local_nb.text("server = %export-serving clf --example X[:4] --run")
    assert "(sklearn, skops)" in out and "Smoke test passed" in out, out
    try:
        url = local_nb.text("print(server.url)").strip()
        assert url.startswith("http://127.0.0.1:")
        expected = json.loads(
            local_nb.text("import json; print(json.dumps(clf.predict(X[4:12]).tolist()))")
        )
        rows = json.loads(local_nb.text("print(json.dumps(X[4:12].tolist()))"))

        assert http(url + "/v2/health/live") == (200, {"live": True})
        assert http(url + "/v2/health/ready")[0] == 200
        status, meta = http(url + "/v2/models/clf")
        assert status == 200 and meta["inputs"] == [
            {"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}
        ]
        flat = [v for row in rows for v in row]
        status, reply = http(
            url + "/v2/models/clf/infer",
            {
                "id": "r1",
                "inputs": [{"name": "input-0", "shape": [8, 4], "datatype": "FP64", "data": flat}],
            },
        )
        assert status == 200 and reply["id"] == "r1"
        assert reply["outputs"][0]["data"] == expected and reply["outputs"][0]["shape"] == [8]
        assert http(url + "/predict", {"instances": rows}) == (200, {"predictions": expected})
        assert local_nb.text("print(server.predict(X[4:12]))").strip() == str(expected)

        # Bad requests: a 4xx with a message each, and the server keeps serving.
        status, body = http(url + "/predict", raw=b"{not json")
        assert status == 400 and "not JSON" in body["error"]
        status, body = http(url + "/predict", raw=b"[" + b"1," * (5 << 20) + b"1]")
        assert status == 413 and "bytes" in body["error"]
        status, body = http(url + "/predict", {"instances": [[1, 2, 3]]})
        assert status == 422 and "[-1, 4]" in body["error"]
        status, body = http(url + "/v2/models/other/infer", {"inputs": []})
        assert status == 404 and "'clf'" in body["error"]
        assert http(url + "/v2/models/clf/infer", method="GET")[0] == 405
        assert http(url + "/predict", {"instances": rows})[0] == 200

        # 32 concurrent clients all get their own answers.
        results: list[Any] = [None] * 32

        def client(i: int) -> None:
            results[i] = http(url + "/predict", {"instances": rows[i % 8 : i % 8 + 1]})

        threads = [threading.Thread(target=client, args=(i,)) for i in range(32)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all(r == (200, {"predictions": [expected[i % 8]]}) for i, r in enumerate(results))

        status, metrics = http(url + "/metrics")
        assert 'nbc_requests_total{route="/predict",status="400"} 1' in metrics
        assert 'nbc_requests_total{route="/predict",status="413"} 1' in metrics
        assert "nbc_model_ready 1" in metrics and "nbc_inference_seconds_bucket" in metrics
        status, spec = http(url + "/openapi.json")
        assert status == 200 and "/v2/models/clf/infer" in spec["paths"]
        # Read-only root, loopback-only port, no capabilities: as the manifests promise.
        host = json.loads(
            subprocess.run(
                ["docker", "inspect", "nbc-serving-clf"], capture_output=True, text=True, check=True
            ).stdout
        )[0]["HostConfig"]
        assert host["ReadonlyRootfs"] and host["CapDrop"] == ["ALL"]
        assert {b["HostIp"] for b in host["PortBindings"]["8080/tcp"]} == {"127.0.0.1"}
    finally:
        local_nb.text("server.stop()")

    folder = tmp_path / "serving-clf"
    image = json.loads((folder / "export.json").read_text())["image"]
    info = json.loads(
        subprocess.run(
            ["docker", "image", "inspect", image], capture_output=True, text=True, check=True
        ).stdout
    )[0]["Config"]
    assert info["User"] == "1000:1000"
    assert info["Entrypoint"] == ["/usr/bin/tini", "--"]
    assert "/v2/health/ready" in " ".join(info["Healthcheck"]["Test"])
    labels = info["Labels"]
    for key in ("created", "version", "base.name", "base.digest"):
        assert labels.get(f"org.opencontainers.image.{key}"), key
    # tmp_path is no git checkout: no source label, and never the local folder.
    assert "org.opencontainers.image.source" not in labels and str(tmp_path) not in str(labels)
    dockerfile = (folder / "Dockerfile").read_text()
    assert "AS build" in dockerfile and dockerfile.rindex("COPY model/") > dockerfile.index(
        "COPY --from=build"
    )
    lock = (folder / "requirements.lock").read_text()
    assert "scikit-learn==" in lock and "skops==" in lock and "uvicorn==" in lock
    assert "torch" not in lock and "jupyter" not in lock  # only what the model needs
    for rel in (
        "compose.yaml",
        "k8s/deployment.yaml",
        "k8s/service.yaml",
        "k8s/hpa.yaml",
        "kserve.yaml",
    ):
        assert (folder / rel).is_file(), rel
    # The planted secret is nowhere in the folder, and not in the image's environment.
    for path in folder.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
    assert TOKEN not in json.dumps(info)

    # --push to a registry that isn't there: a clear error, the smoke-tested image stays.
    # The re-export builds again (a new tag when skops wrote other bytes, else the same tag,
    # the first build then left untagged): every one is removed at the end.
    first = runtime.image_info(image).id
    content, _ = local_nb.run("%export-serving clf --example X[:4] --push 127.0.0.1:9/team")
    assert content["status"] == "error" and content["ename"] == "UsageError"
    assert "push 127.0.0.1:9/team/serving-clf" in content["evalue"]
    second = json.loads((folder / "export.json").read_text())["image"]
    assert runtime.image_info(second) is not None
    assert runtime.image_info(f"127.0.0.1:9/team/{second.split('/', 1)[1]}") is None  # untagged
    for ref in (image, second, first):
        runtime_remove_image(ref)


def runtime_remove_image(ref: str) -> None:
    subprocess.run(["docker", "image", "rm", "-f", ref], capture_output=True, check=False)


def test_bad_input_is_clear_and_writes_nothing(local_nb: Frontend, tmp_path: Path) -> None:
    def error_of(line: str) -> str:
        content, _ = local_nb.run(line)
        assert content["status"] == "error" and content["ename"] == "UsageError", line
        return str(content["evalue"])

    assert "Did you mean 'clf'?" in error_of("%export-serving clff --example X[:4]")
    local_nb.text("settings = {'a': 1}")
    text = error_of("%export-serving settings --example X[:4]")
    assert "builtins.dict" in text and "Wrap it in a function" in text
    assert "Calling Pipeline.predict on the example failed" in error_of(
        "%export-serving clf --example X[:4, :2]"
    )
    assert "--example" in error_of("%export-serving clf")
    local_nb.text("W = np.ones(4)\ndef score(x):\n    return x @ W")
    assert "global 'W' (ndarray)" in error_of("%export-serving score --example X[:4] --no-build")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    assert "not an nbcontainers export" in error_of(
        "%export-serving clf --example X[:4] --dir taken"
    )
    assert [p.name for p in (tmp_path / "taken").iterdir()] == ["notes.txt"]
    assert not list(tmp_path.glob(".nbc-export-*"))


TORCH = """
import torch
from torch import nn
class Net(nn.Module):
    def __init__(self, n_in, hidden=16):
        super().__init__()
        self.n_in = n_in
        self.hidden = hidden
        self.body = nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, 3))
    def forward(self, x):
        return self.body(x)
class Branchy(Net):
    def forward(self, x):
        if x.sum() > 0:  # data-dependent: torch.export can't trace it
            return self.body(x)
        return -self.body(x)
torch.manual_seed(0)
net = Net(5)
branchy = Branchy(5, hidden=8)
x = torch.randn(6, 5)
"""


def test_torch_from_container_kernel(tmp_path: Path, torch_image: str, runtime: Any) -> None:
    with notebook(tmp_path) as fe:
        fe.text("%container use pytorch-cpu")
        fe.text(TORCH)
        out = fe.text("%export-serving net --example x[:4]", timeout=300)  # build + trim
        assert "(torch, torch.export)" in out and "Smoke test passed" in out, out
        out = fe.text("%export-serving branchy --example x[:4] --no-build")
        assert "(torch, safetensors)" in out and "could not trace" in out, out
        fe.text("%container stop")
    image = json.loads((tmp_path / "serving-net" / "export.json").read_text())["image"]
    lock = (tmp_path / "serving-net" / "requirements.lock").read_text()
    assert "torch==2.13.0+cpu" in lock and "nvidia" not in lock
    runtime_remove_image(image)

    # The safetensors + source form loads in the server's own loader and answers the same.
    folder = tmp_path / "serving-branchy"
    code = (folder / "model" / "model_code.py").read_text()
    assert "class Net(nn.Module)" in code and "class Branchy(Net)" in code
    assert json.loads((folder / "model" / "meta.json").read_text())["init_args"] == {
        "n_in": 5,
        "hidden": 8,
    }
    # The serving image gets safetensors and prometheus_client from its lock; the catalog's
    # torch image has neither, so this check borrows the test environment's (pure Python,
    # and an abi3 wheel for this Debian's Python).
    import prometheus_client
    import safetensors

    check = (
        "import json, sys, numpy as np; sys.path[:0] = ['/x/server', '/st']; import server;"
        "meta = json.load(open('/x/model/meta.json')); ex = json.load(open('/x/example.json'));"
        "f = server.load_model('/x/model', meta);"
        "i = ex['inputs'][0]; x = np.asarray(i['data'], dtype='float32').reshape(i['shape']);"
        "got = f(x)[0].reshape(-1); want = np.asarray(ex['outputs'][0]['data']);"
        "print('SAME' if np.allclose(got, want, rtol=1e-4, atol=1e-5) else 'DIFF')"
    )
    cid = runtime.run(
        ContainerSpec(
            image=load_catalog()[torch_image].ref,
            command=("python3", "-c", check),
            mounts=(
                Mount(str(folder), "/x"),
                Mount(str(Path(safetensors.__file__).parent), "/st/safetensors"),
                Mount(str(Path(prometheus_client.__file__).parent), "/st/prometheus_client"),
            ),
            network_mode="none",
        )
    )
    try:
        assert runtime.wait(cid, timeout=120) == 0, runtime.logs(cid)
        assert "SAME" in runtime.logs(cid)
    finally:
        runtime.remove(cid)


def test_sklearn_from_a_container_kernel_uses_its_own_pins(
    tmp_path: Path, python_image: str
) -> None:
    with notebook(tmp_path) as fe:
        fe.text("%container use python")
        fe.text(TRAIN)
        out = fe.text("%export-serving clf --example X[:4] --no-build --dir clf")
        assert "(sklearn, skops)" in out, out
        versions = fe.text(
            "import sklearn, numpy; print(f'scikit-learn=={sklearn.__version__}', "
            "f'numpy=={numpy.__version__}')"
        ).split()
        fe.text("%container stop")
    lock = (tmp_path / "clf" / "requirements.lock").read_text()
    assert all(pin in lock for pin in versions), (versions, lock)
    assert "ipykernel" not in lock and "matplotlib" not in lock
    meta = json.loads((tmp_path / "clf" / "model" / "meta.json").read_text())
    assert meta["python"] == "3.11" and meta["format"] == "skops"
