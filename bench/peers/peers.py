"""Our serving image against MLServer (with its scikit-learn runtime) and PyTriton
(``nvidia-pytriton``, which bundles Triton's server), each installed from PyPI on the same
base image, serving the same iris model, measured with the same client in the same run:
build time, image size, cold start to a ready model, and p50/p99 and requests/s of one-row
Open Inference Protocol JSON requests at each concurrency. Not part of CI: it builds two
large images (PyTriton's wheel alone is several hundred MB).

Usage: python bench/peers/peers.py [--requests N] [--clients 32,64] [--starts K]
                                   [--only ours,mlserver,pytriton] [--build-only | --reuse]

``--build-only`` builds the peers' images and keeps them (no container runs: it may go
outside the Docker lock); ``--reuse`` then measures with them instead of building again.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from nbcontainers import __version__
from nbcontainers.catalog.build import build_image
from nbcontainers.catalog.entries import CatalogImage
from nbcontainers.runtimes import get_runtime
from nbcontainers.serving import smoke
from nbcontainers.serving.export import ExportOptions, export_from_namespace

BASE = "nbcontainers/base:bookworm"

# The same client as bench/serving.py: one row per request, keep-alive connections.
_spec = importlib.util.spec_from_file_location(
    "bench_serving", Path(__file__).parent.parent / "serving.py"
)
assert _spec and _spec.loader
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

# Python, a virtualenv, pip from PyPI with the machine's pip settings as BuildKit secrets
# (never in a layer, as our own images get them), and an iris model trained in the image
# so the pickle matches the scikit-learn that pip chose.
DOCKERFILE = """ARG BASE_IMAGE={base}
FROM ${{BASE_IMAGE}}
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates python3 \\
        python3-venv libpython3.11 && rm -rf /var/lib/apt/lists/* && python3 -m venv /opt/venv
COPY requirements.txt /opt/peer/requirements.txt
RUN --mount=type=secret,id=pipconf --mount=type=secret,id=pipcert set -eu; \\
    if [ ! -e /run/secrets/pipconf ] && [ -s /run/secrets/pipcert ]; then \\
        export PIP_CERT=/run/secrets/pipcert; fi; \\
    PIP_CONFIG_FILE=/run/secrets/pipconf PIP_DISABLE_PIP_VERSION_CHECK=1 \\
    /opt/venv/bin/pip install --no-cache-dir -r /opt/peer/requirements.txt
COPY peer/ /opt/peer/
RUN /opt/venv/bin/python -c "import joblib; from sklearn.datasets import load_iris; \\
from sklearn.linear_model import LogisticRegression; X, y = load_iris(return_X_y=True); \\
joblib.dump(LogisticRegression(max_iter=500).fit(X, y), '/opt/peer/model/model.joblib')"
ENV PATH=/opt/venv/bin:$PATH HOME=/tmp
EXPOSE 8080
{tail}
"""

MLSERVER = {
    # uvloop 0.22 dropped the implicit event loop MLServer 1.7's workers ask for.
    "requirements": ["mlserver", "mlserver-sklearn", "scikit-learn", "joblib", "uvloop<0.22"],
    "files": {
        "model/model-settings.json": json.dumps(
            {
                "name": "iris",
                "implementation": "mlserver_sklearn.SKLearnModel",
                "parameters": {"uri": "./model.joblib"},
            }
        ),
        # MLServer's defaults but the port: one worker, adaptive batching off.
        "model/settings.json": json.dumps({"http_port": 8080, "grpc_port": 8081}),
    },
    "tail": 'CMD ["mlserver", "start", "/opt/peer/model"]',
    "port": 8080,
}

TRITON_SERVER = """
import joblib
import numpy as np
from pytriton.decorators import batch
from pytriton.model_config import ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig

model = joblib.load("/opt/peer/model/model.joblib")


@batch
def infer(**inputs):
    return {"output-0": model.predict(inputs["input-0"]).astype(np.int64).reshape(-1, 1)}


# Dynamic batching on (PyTriton's default with max_batch_size), as Triton users run it.
with Triton(config=TritonConfig(http_port=8080, grpc_port=8081, metrics_port=8082)) as triton:
    triton.bind(
        model_name="iris",
        infer_func=infer,
        inputs=[Tensor(name="input-0", dtype=np.float64, shape=(4,))],
        outputs=[Tensor(name="output-0", dtype=np.int64, shape=(1,))],
        config=ModelConfig(max_batch_size=64),
    )
    triton.serve()
"""

PYTRITON = {
    "requirements": ["nvidia-pytriton", "scikit-learn", "joblib"],
    "files": {"model/.keep": "", "serve.py": TRITON_SERVER},
    "tail": 'CMD ["python", "/opt/peer/serve.py"]',
    "port": 8080,
}


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True).stdout


def build_peer(
    runtime: Any, name: str, peer: dict[str, Any], tmp: Path, reuse: bool = False
) -> tuple[str, float]:
    ref = f"nbcontainers-bench/peer-{name}:latest"
    if reuse and runtime.image_info(ref) is not None:
        return ref, float("nan")
    folder = tmp / name
    (folder / "peer").mkdir(parents=True)
    (folder / "Dockerfile").write_text(DOCKERFILE.format(base=BASE, tail=peer["tail"]))
    (folder / "requirements.txt").write_text("\n".join(peer["requirements"]) + "\n")
    (folder / "requirements.lock").write_text("")  # nothing of the host's to vendor
    for rel, text in peer["files"].items():
        (folder / "peer" / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / "peer" / rel).write_text(text)
    image = CatalogImage(name=f"peer-{name}", ref=ref, display_name=name, source=folder,
                         base=BASE, user_defined=True)  # fmt: skip
    t0 = time.perf_counter()
    build_image(image, runtime, base_image=BASE, on_line=lambda line: None)
    return ref, time.perf_counter() - t0


def start(ref: str, port: int, container_port: int) -> str:
    return docker("run", "-d", "-p", f"127.0.0.1:{port}:{container_port}", ref).strip()


def wait_ready(cid: str, port: int, timeout: float = 120) -> float:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        try:
            smoke.request(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2)
            # Ready for the model, not just the server: one answered request.
            smoke.request(f"http://127.0.0.1:{port}/v2/models/iris/infer", BODY, timeout=10)
            return time.perf_counter() - t0
        except Exception:
            time.sleep(0.05)
    logs = subprocess.run(["docker", "logs", cid], capture_output=True, text=True)
    said = (logs.stdout + logs.stderr)[-3000:]
    raise RuntimeError(f"{cid[:12]} not ready after {timeout} s: {said}")


X = load_iris(return_X_y=True)[0]
BODY = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": list(X[0])}]}
BODIES = [
    json.dumps(
        {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": list(r)}]}
    ).encode()
    for r in X[:50]
]


def measure(
    ref: str, container_port: int, starts: int, requests: int, clients: list[int]
) -> dict[str, Any]:
    colds = []
    for _ in range(starts):
        port = smoke.free_port()
        cid = start(ref, port, container_port)
        try:
            colds.append(wait_ready(cid, port))
        finally:
            docker("rm", "-f", cid)
    port = smoke.free_port()
    cid = start(ref, port, container_port)
    runs = {}
    try:
        wait_ready(cid, port)
        for c in clients:
            bench.throughput(port, "/v2/models/iris/infer", BODIES, 500, c)  # warm up
            runs[c] = bench.throughput(port, "/v2/models/iris/infer", BODIES, requests, c)
    finally:
        docker("rm", "-f", cid)
    size = int(docker("image", "inspect", "--format", "{{.Size}}", ref))
    return {"cold": colds, "runs": runs, "size": size}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--clients", default="32,64")
    parser.add_argument("--starts", type=int, default=3)
    parser.add_argument("--only", default="ours,mlserver,pytriton")
    parser.add_argument("--build-only", action="store_true")
    parser.add_argument("--reuse", action="store_true")
    args = parser.parse_args()
    clients = [int(c) for c in args.clients.split(",")]
    runtime = get_runtime()
    base_size = int(docker("image", "inspect", "--format", "{{.Size}}", BASE))
    results: dict[str, dict[str, Any]] = {}
    builds: dict[str, Callable[[Path], tuple[str, float, int]]] = {}

    def ours(tmp: Path) -> tuple[str, float, int]:
        model = LogisticRegression(max_iter=500).fit(*load_iris(return_X_y=True))
        options = ExportOptions(example="X[:4]", folder=tmp / "ours")
        result = export_from_namespace(
            {"iris": model, "X": X}, "iris", options, runtime=runtime, version=__version__,
            say=lambda line: None,
        )  # fmt: skip
        assert result.image is not None
        return result.image, result.build_seconds, 8080

    builds["ours"] = ours
    peers = {"mlserver": MLSERVER, "pytriton": PYTRITON}
    for name, peer in peers.items():
        builds[name] = lambda tmp, n=name, p=peer: (  # type: ignore[misc]
            *build_peer(runtime, n, p, tmp, args.reuse),
            8080,
        )
    if args.build_only:
        with tempfile.TemporaryDirectory() as work:
            for name in args.only.split(","):
                if name in peers:
                    t0 = time.perf_counter()
                    try:
                        build_peer(runtime, name, peers[name], Path(work))
                        print(f"{name}: built in {time.perf_counter() - t0:.0f} s")
                    except Exception as exc:
                        print(f"{name}: build FAILED: {type(exc).__name__}: {str(exc)[-1500:]}")
        return
    with tempfile.TemporaryDirectory() as work:
        for name in args.only.split(","):
            ref = ""
            try:
                ref, build_s, container_port = builds[name](Path(work))
                results[name] = {"build": build_s}
                results[name] |= measure(ref, container_port, args.starts, args.requests, clients)
            except Exception as exc:  # one peer failing still reports the others
                results[name] = {"error": f"{type(exc).__name__}: {str(exc)[-800:]}"}
            finally:
                if ref:
                    subprocess.run(["docker", "image", "rm", "-f", ref], capture_output=True)
    print(f"one iris model, base {BASE} ({base_size / 1e6:.0f} MB), {args.requests} one-row "
          "OIP JSON requests per concurrency, same client, same run")  # fmt: skip
    head = "".join(f" {f'c={c} req/s':>11} {'p50/p99 ms':>14}" for c in clients)
    print(f"{'':10} {'build s':>8} {'+MB':>6} {'ready s':>8}{head}")
    for name, r in results.items():
        if "error" in r:
            print(f"{name:10} FAILED: {r['error']}")
            continue
        cells = ""
        for c in clients:
            lat, rps, failures = r["runs"][c]
            ok = "" if not failures else f" ({len(failures)} failed)"
            cells += f" {rps:11.0f} {bench.pct(lat, 0.5):6.2f}/{bench.pct(lat, 0.99):<7.2f}{ok}"
        growth = (r["size"] - base_size) / 1e6
        print(
            f"{name:10} {r['build']:8.0f} {growth:6.0f} {statistics.median(r['cold']):8.2f}{cells}"
        )


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
