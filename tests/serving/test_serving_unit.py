"""The serving pieces without Docker: the model capture in a kernel namespace, the ASGI server
driven in-process (routes, errors, batching, metrics), the rendered folder and manifests."""

from __future__ import annotations

import asyncio
import json
import linecache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from nbcontainers.errors import ExportError
from nbcontainers.inkernel import serialize
from nbcontainers.magics import _LOCAL_ASSIGNMENT
from nbcontainers.recipe.environment import Package, Snapshot
from nbcontainers.serving import manifests
from nbcontainers.serving.image import Server
from nbcontainers.serving.lock import plan_lock
from nbcontainers.serving.render import ExportPlan, render_dockerfile, write_export
from nbcontainers.serving.smoke import compare

X = np.arange(24, dtype="float64").reshape(6, 4)


def double(x: Any) -> Any:
    return np.asarray(x) * SCALE


SCALE = 2.0


def export(
    ns: dict[str, Any], name: str, tmp: Path, example: str = "X[:4]", **opts: Any
) -> dict[str, Any]:
    return dict(json.loads(serialize.export_object(ns, name, example, str(tmp), json.dumps(opts))))


def namespace() -> dict[str, Any]:
    cells = ["import numpy as np", "SCALE = 2.0\ndef double(x):\n    return np.asarray(x) * SCALE"]
    return {"X": X, "np": np, "double": double, "SCALE": SCALE, "In": cells}


def test_function_is_saved_as_source_with_its_imports_and_constants(tmp_path: Path) -> None:
    meta = export(namespace(), "double", tmp_path)
    assert meta["format"] == "source" and meta["kind"] == "function"
    assert meta["signature"]["inputs"] == [
        {"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}
    ]
    code = (tmp_path / "model" / "model_code.py").read_text()
    assert "import numpy as np" in code and "SCALE = 2.0" in code and "def double" in code
    example = json.loads((tmp_path / "example.json").read_text())
    assert example["outputs"][0]["data"] == (X[:4] * 2).reshape(-1).tolist()
    assert meta["requires"] == ["numpy"]


def test_sklearn_pipeline_is_saved_with_skops(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, [0, 1, 0, 1, 0, 1])
    meta = export({**namespace(), "clf": clf}, "clf", tmp_path, method="predict_proba")
    assert meta["format"] == "skops" and (tmp_path / "model" / "model.skops").is_file()
    assert meta["signature"]["outputs"][0] == {
        "name": "output-0",
        "datatype": "FP64",
        "shape": [-1, 2],
    }
    assert {"scikit-learn", "skops", "numpy"} <= set(meta["requires"])
    assert not (tmp_path / "model" / "model.pkl").exists()  # pickle only when asked


@pytest.mark.parametrize(
    ("name", "example", "opts", "message"),
    [
        ("doubel", "X[:4]", {}, "Did you mean 'double'?"),
        ("X", "X[:4]", {}, "numpy.ndarray, not a model"),
        ("double", "", {}, "Pass an example input with --example"),
        ("double", "Y[:4]", {}, "--example 'Y[:4]' failed: NameError"),
        ("double", "X[0, 0]", {}, "single scalar"),
        ("double", "X[:4]", {"format": "onnx"}, "Unknown format 'onnx'"),
        ("lam", "X[:4]", {}, "define it with def"),
        ("uses_array", "X[:4]", {}, "global 'W' (ndarray)"),
        ("broken", "X[:4]", {}, "Calling broken on the example failed (ValueError: nope)"),
    ],
)
def test_bad_input_says_what_to_do(
    tmp_path: Path, name: str, example: str, opts: dict[str, Any], message: str
) -> None:
    ns = namespace()
    ns["W"] = np.ones(4)
    cell = "def uses_array(x):\n    return x @ W\ndef broken(x):\n    raise ValueError('nope')\n"
    # As IPython does for cells: the source is findable through linecache.
    linecache.cache["<cell-9>"] = (len(cell), None, cell.splitlines(True), "<cell-9>")
    exec(compile(cell, "<cell-9>", "exec"), ns)
    ns["lam"] = lambda x: x
    result = export(ns, name, tmp_path, example, **opts)
    assert message in result["error"]


def write_model(tmp: Path, meta: dict[str, Any], code: str) -> Path:
    model = tmp / "model"
    model.mkdir(parents=True, exist_ok=True)
    (model / "model_code.py").write_text(code)
    (model / "meta.json").write_text(
        json.dumps(
            {
                "name": "m",
                "kind": "function",
                "format": "source",
                "files": ["model_code.py"],
                "function": "f",
                "frame": False,
                "signature": {
                    "inputs": [{"name": "input-0", "datatype": "FP32", "shape": [-1, 2]}],
                    "outputs": [{"name": "output-0", "datatype": "FP32", "shape": [-1]}],
                },
                **meta,
            }
        )
    )
    return model


async def request(
    app: Server, method: str, path: str, body: Any = None, raw: bytes | None = None
) -> tuple[int, Any]:
    data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": data, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({"type": "http", "method": method, "path": path, "headers": []}, receive, send)
    text = sent[1]["body"].decode()
    return sent[0]["status"], (text if path == "/metrics" else json.loads(text))


async def started(app: Server) -> None:
    messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await messages.put({"type": "lifespan.startup"})

    async def send(_: dict[str, Any]) -> None:
        pass

    asyncio.get_running_loop().create_task(app({"type": "lifespan"}, messages.get, send))
    for _ in range(200):
        if app.predict is not None or app.load_error:
            return
        await asyncio.sleep(0.01)


SLOW = (
    "import time, numpy as np\ndef f(x):\n    time.sleep(0.05)\n"
    "    return np.asarray(x, dtype='float32').sum(axis=1)\n"
)


def test_server_routes_errors_and_metrics(tmp_path: Path) -> None:
    app = Server(str(write_model(tmp_path, {"batchable": True}, SLOW)), max_body=1000, max_rows=8)

    async def scenario() -> None:
        assert (await request(app, "GET", "/v2/health/ready"))[0] == 503  # before loading
        await started(app)
        assert await request(app, "GET", "/v2/health/ready") == (200, {"ready": True})
        status, reply = await request(
            app,
            "POST",
            "/v2/models/m/infer",
            {
                "id": "7",
                "inputs": [
                    {"name": "input-0", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3, 4]}
                ],
            },
        )
        assert status == 200 and reply["id"] == "7"
        assert reply["outputs"] == [
            {"name": "output-0", "datatype": "FP32", "shape": [2], "data": [3.0, 7.0]}
        ]
        assert await request(app, "POST", "/predict", [[1, 1]]) == (200, {"predictions": [2.0]})
        bad = [
            (await request(app, "POST", "/predict", raw=b"{"), 400, "not JSON"),
            (
                await request(app, "POST", "/predict", raw=b"[" + b"1," * 600 + b"1]"),
                413,
                "1000 bytes",
            ),
            (await request(app, "POST", "/predict", [[1, 2, 3]]), 422, "[-1, 2]"),
            (await request(app, "POST", "/predict", [["a", "b"]]), 400, "must be FP32"),
            (await request(app, "POST", "/predict", [[1, 1]] * 9), 413, "At most 8 rows"),
            (await request(app, "POST", "/predict", {"rows": []}), 400, "instances"),
            (await request(app, "POST", "/v2/models/x/infer", {}), 404, "'m'"),
            (await request(app, "GET", "/predict"), 405, "POST"),
            (await request(app, "GET", "/nowhere"), 404, "openapi"),
        ]
        for (status, body), want_status, want_text in bad:
            assert status == want_status and want_text in body["error"], (status, body)
        # Concurrent requests while the model is busy share model calls.
        answers = await asyncio.gather(
            *(request(app, "POST", "/predict", [[i, i]]) for i in range(6))
        )
        assert [a[1]["predictions"] for a in answers] == [[2.0 * i] for i in range(6)]
        status, metrics = await request(app, "GET", "/metrics")
        assert 'nbc_requests_total{route="/predict",status="422"} 1' in metrics
        calls = dict(
            line.rsplit(" ", 1)
            for line in metrics.splitlines()
            if line.startswith("nbc_batch_calls_total{")
        )
        assert any(int(k.split('"')[1]) > 1 for k in calls), metrics
        status, spec = await request(app, "GET", "/openapi.json")
        assert spec["openapi"].startswith("3.") and "/v2/models/m/infer" in spec["paths"]
        assert (await request(app, "GET", "/v2/models/m"))[1]["platform"] == "source"

    asyncio.run(scenario())


def test_model_errors_are_422_and_the_server_keeps_serving(tmp_path: Path) -> None:
    code = (
        "import numpy as np\ndef f(x):\n    if (x < 0).any():\n"
        "        raise ValueError('negative')\n    return x.sum(axis=1)\n"
    )
    app = Server(str(write_model(tmp_path, {"batchable": False}, code)))

    async def scenario() -> None:
        await started(app)
        status, body = await request(app, "POST", "/predict", [[-1, 1]])
        # The model's own words stay in the server's log: they may name its code and files.
        assert status == 422 and "model failed on this input" in body["error"]
        assert "negative" not in body["error"] and "ValueError" not in body["error"]
        assert await request(app, "POST", "/predict", [[1, 1]]) == (200, {"predictions": [2.0]})

    asyncio.run(scenario())


def test_load_failure_keeps_ready_at_503_with_the_reason(tmp_path: Path) -> None:
    app = Server(str(write_model(tmp_path, {}, "raise ImportError('no such lib')\n")))

    async def scenario() -> None:
        await started(app)
        status, body = await request(app, "GET", "/v2/health/ready")
        assert status == 503 and "failed to load" in body["error"]
        assert "no such lib" not in body["error"]  # in the log, never to any client
        assert (await request(app, "GET", "/v2/health/live"))[0] == 200

    asyncio.run(scenario())


def test_compare_reports_differences_within_tolerance() -> None:
    want = [{"name": "o", "shape": [3], "data": [1.0, 2.0, 3.0]}]
    assert compare(want, [{"name": "o", "shape": [3], "data": [1.0, 2.000001, 3.0]}]) == []
    problems = compare(want, [{"name": "o", "shape": [3], "data": [1.0, 2.5, 3.0]}])
    assert problems == ["o: 1 of 3 values differ ([1] 2.0 != 2.5)"]
    assert "shape [2]" in compare(want, [{"name": "o", "shape": [2], "data": [1, 2]}])[0]


def test_manifests_are_valid_yaml_and_ask_for_a_gpu_only_when_needed() -> None:
    for gpu in (False, True):
        files = manifests.all_files(manifests.Deployment(name="clf", image="r/clf:1", gpu=gpu))
        docs = {rel: yaml.safe_load(text) for rel, text in files.items()}
        container = docs["k8s/deployment.yaml"]["spec"]["template"]["spec"]["containers"][0]
        assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
        assert container["securityContext"]["runAsNonRoot"] is True
        assert ("nvidia.com/gpu" in container["resources"]["limits"]) is gpu
        assert docs["k8s/hpa.yaml"]["kind"] == "HorizontalPodAutoscaler"
        assert docs["kserve.yaml"]["spec"]["predictor"]["containers"][0]["image"] == "r/clf:1"
        assert docs["compose.yaml"]["services"]["clf"]["ports"] == ["127.0.0.1:8080:8080"]
        assert ("deploy" in docs["compose.yaml"]["services"]["clf"]) is gpu


def _plan(**meta: Any) -> ExportPlan:
    return ExportPlan(
        name="clf",
        image="r/clf:1",
        meta={"kind": "sklearn", "format": "skops", **meta},
        lock="numpy==2.0.0\n",
        base="debian:bookworm-slim@sha256:abc",
        python="3.11",
    )


def test_dockerfile_is_multi_stage_non_root_with_model_last() -> None:
    text = render_dockerfile(_plan(), "0.1.0")
    assert text.count("FROM ${BASE_IMAGE}") == 2 and "AS build" in text
    assert "USER 1000:1000" in text and 'ENTRYPOINT ["/usr/bin/tini", "--"]' in text
    assert "HEALTHCHECK" in text and "/v2/health/ready" in text
    assert text.rindex("COPY model/") > text.index("COPY --from=build")
    assert "trim.py" in text.split("COPY --from=build")[0]  # the venv is trimmed before
    assert "pipcert" in text and "ENV PIP" not in text  # secrets are mounts, never ENV
    other = render_dockerfile(
        ExportPlan(**{**_plan().__dict__, "python": "3.12", "base": "python:3.12-slim-bookworm"}),
        "0.1.0",
    )
    assert "python3-venv" not in other and "ARG BASE_IMAGE=python:3.12-slim-bookworm" in other


def test_write_export_refuses_a_foreign_folder(tmp_path: Path) -> None:
    staged = tmp_path / "staged"
    (staged / "model").mkdir(parents=True)
    (staged / "example.json").write_text("{}")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "a.txt").write_text("x")
    with pytest.raises(ExportError, match="not an nbcontainers export"):
        write_export(_plan(), staged, tmp_path / "mine", "0.1.0")
    folder = write_export(_plan(), staged, tmp_path / "out", "0.1.0")
    assert json.loads((folder / "model" / "meta.json").read_text())["name"] == "clf"
    write_export(_plan(), staged, folder, "0.1.0")  # an earlier export is replaced
    assert (folder / "server" / "server.py").is_file() and (folder / ".nbc" / "wheels").is_dir()


def test_cpu_image_of_a_cuda_torch_drops_the_cuda_wheels(monkeypatch: pytest.MonkeyPatch) -> None:
    import nbcontainers.recipe.hashes

    monkeypatch.setattr(
        nbcontainers.recipe.hashes, "published_hashes", lambda pins, settings: {p: [] for p in pins}
    )
    snap = Snapshot(
        python="3.11",
        packages=(
            Package("numpy", "2.0.0", "index"),
            Package("torch", "2.13.0", "index", requires=("nvidia-cublas", "triton", "numpy")),
            Package("nvidia-cublas", "13.0", "index"),
            Package("triton", "3.5", "index"),
            Package("pandas", "2.2", "index"),
        ),
    )
    lock, extra = plan_lock(snap, ["torch"], gpu=False)
    assert "torch==2.13.0+cpu" in lock and "nvidia" not in lock and "triton" not in lock
    assert "pandas" not in lock and "uvicorn==" in lock
    assert extra == "https://download.pytorch.org/whl/cpu"
    lock, extra = plan_lock(snap, ["torch"], gpu=True)
    assert "torch==2.13.0\n" in lock and "nvidia-cublas==13.0" in lock and extra is None


def test_local_installs_block_the_export_with_the_way_out(monkeypatch: pytest.MonkeyPatch) -> None:
    snap = Snapshot(
        python="3.11", packages=(Package("mylib", "0.1", "editable", source="file:///src/mylib"),)
    )
    with pytest.raises(ExportError, match=r"mylib \(installed from file:///src/mylib\).*--wheels"):
        plan_lock(snap, ["mylib"], gpu=False)


def test_assignment_from_the_magic_runs_locally() -> None:
    assert _LOCAL_ASSIGNMENT.match("server = %export-serving clf --example X[:4] --run")
    assert not _LOCAL_ASSIGNMENT.match("x = compute(%export)")


def test_cli_exports_a_saved_skops_model_and_refuses_pickle_unless_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pickle

    import skops.io
    from click.testing import CliRunner
    from sklearn.linear_model import LogisticRegression

    import nbcontainers.recipe.hashes
    from nbcontainers.cli import main

    monkeypatch.setattr(
        nbcontainers.recipe.hashes, "published_hashes", lambda pins, settings: {p: [] for p in pins}
    )
    monkeypatch.chdir(tmp_path)
    clf = LogisticRegression().fit(X, [0, 1, 0, 1, 0, 1])
    skops.io.dump(clf, tmp_path / "clf.skops")
    (tmp_path / "clf.pkl").write_bytes(pickle.dumps(clf))
    np.save(tmp_path / "batch.npy", X[:3])
    runner = CliRunner()
    done = runner.invoke(main, ["export", "clf.skops", "--example", "batch.npy", "--no-build"])
    assert done.exit_code == 0, done.output
    meta = json.loads((tmp_path / "serving-clf" / "model" / "meta.json").read_text())
    assert meta["format"] == "skops" and meta["signature"]["inputs"][0]["shape"] == [-1, 4]
    refused = runner.invoke(main, ["export", "clf.pkl", "--example", "batch.npy", "--no-build"])
    assert refused.exit_code == 8 and "--format pickle" in refused.output
    missing = runner.invoke(main, ["export", "nope.skops", "--example", "batch.npy"])
    assert missing.exit_code == 8 and "No file nope.skops" in missing.output


def test_run_again_replaces_the_earlier_server_of_the_same_model() -> None:
    from types import SimpleNamespace

    from nbcontainers.serving import smoke

    class Runtime:
        def __init__(self) -> None:
            self.removed: list[str] = []
            self.specs: list[Any] = []

        def list(self, labels: dict[str, Any]) -> list[Any]:
            assert labels == {smoke.LABEL: "clf"}
            return [
                SimpleNamespace(id="old", name="nbc-serving-clf"),
                SimpleNamespace(id="other", name="nbc-serving-clf-2"),
            ]

        def remove(self, cid: str) -> None:
            self.removed.append(cid)

        def run(self, spec: Any) -> str:
            self.specs.append(spec)
            return "new"

    rt = Runtime()
    served = smoke.start(rt, "img", "clf", port=8123, container_name="nbc-serving-clf")  # type: ignore[arg-type]
    assert rt.removed == ["old"] and served.url == "http://127.0.0.1:8123"
    assert rt.specs[0].ports == {8080: ("127.0.0.1", 8123)}  # loopback only


def test_manifests_run_one_worker_per_requested_cpu() -> None:
    # Without a CPU limit a pod sees the whole node: NBC_WORKERS follows the CPU request.
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    d = manifests.Deployment(name="clf", image="r/clf:1", gpu=False, grpc=True)
    files = manifests.all_files(d)
    deployment = yaml.safe_load(files["k8s/deployment.yaml"])
    kubernetes_validate.validate(deployment, "1.29", strict=True)
    predictor = yaml.safe_load(files["kserve.yaml"])["spec"]["predictor"]
    for container in (
        deployment["spec"]["template"]["spec"]["containers"][0],
        predictor["containers"][0],
    ):
        assert container["env"] == [
            {
                "name": "NBC_WORKERS",
                "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu", "divisor": "1"}},
            }
        ]
    gpu = ExportPlan(name="m", image="x", meta={"format": "pt2", "kind": "torch", "gpu": True},
                     lock="", base="b", python="3.11")  # fmt: skip
    assert "NBC_WORKERS=1" in render_dockerfile(gpu, "1")  # one model copy on the GPU
    cpu = ExportPlan(name="m", image="x", meta={"format": "skops", "kind": "sklearn"},
                     lock="", base="b", python="3.11")  # fmt: skip
    text = render_dockerfile(cpu, "1")
    assert "NBC_WORKERS" not in text.split("CMD [")[0].split("ENV PATH")[1]
    assert "server.main()" in text.split("CMD [")[1]
