"""Our serving image against MLServer (with its scikit-learn runtime) and PyTriton
(``nvidia-pytriton``, which bundles Triton's server), each installed from PyPI on the same
base image, serving the same iris model, measured with the same client in the same run:
build time, image size, cold start to the first answered inference, and requests/s and
p50/p99 of one-row Open Inference Protocol JSON requests at each concurrency, with each
peer's figures as a ratio to ours. Not part of CI: the peers' images are large.

Usage: python bench/peers/peers.py [--requests N] [--clients 1,8,32,64] [--starts K]
                                   [--only ours,mlserver,pytriton] [--ready-timeout S]
                                   [--workers N] [--build-only | --reuse] [--keep]

Run it under the Docker lock (it starts containers): ``flock /tmp/nbc-dock.lock nice -n 19
.venv/bin/python bench/peers/peers.py``. ``--build-only`` builds the peers' images and keeps
them (no containers: it may run outside the lock); ``--reuse`` measures kept images instead of
building again. Every container it starts is removed at its end (SIGTERM and Ctrl-C
included), and every image it built or reused unless ``--keep``. The base image and
BuildKit's layer cache stay, so a second run builds in seconds.

Each server runs as its project documents it for production, with its defaults otherwise:
ours with ``NBC_WORKERS`` = the container's CPUs; MLServer with ``debug: false`` (no access
log line per request, as ours) and its default one inference worker; PyTriton with dynamic
batching (``max_batch_size`` set), one model instance and ``--shm-size 256m`` (its docs: the
64 MB Docker default may not hold its proxy's buffers). ``--workers N`` gives all three N:
``NBC_WORKERS``, ``MLSERVER_PARALLEL_WORKERS``, and N PyTriton model instances.

A peer that does not answer within ``--ready-timeout`` is reported with its container state
and last log lines instead of figures; the other servers are still measured.
"""

from __future__ import annotations

import argparse
import http.client
import importlib.util
import json
import signal
import statistics
import subprocess
import tempfile
import time
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
INFER = "/v2/models/iris/infer"
LABEL = "io.nbcontainers.bench=peers"

# The same client as bench/serving.py: one row per request, keep-alive connections.
_spec = importlib.util.spec_from_file_location(
    "bench_serving", Path(__file__).parent.parent / "serving.py"
)
assert _spec and _spec.loader
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

# Python, a virtualenv, pip from PyPI with the machine's pip settings as BuildKit secrets
# (never in a layer, as our own images get them), and an iris model trained in the image
# so the pickle matches the scikit-learn that pip chose. PYTHONUNBUFFERED so that a peer's
# own messages reach `docker logs` before it is killed.
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
ENV PATH=/opt/venv/bin:$PATH HOME=/tmp PYTHONUNBUFFERED=1
EXPOSE 8080
{tail}
"""

MLSERVER: dict[str, Any] = {
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
        # debug (default true) is uvicorn's access log: a line per request, which ours
        # does not write either. Otherwise MLServer's defaults: one inference worker.
        "model/settings.json": json.dumps({"http_port": 8080, "grpc_port": 8081, "debug": False}),
    },
    "tail": 'CMD ["mlserver", "start", "/opt/peer/model"]',
    "run": [],
    "workers": "MLSERVER_PARALLEL_WORKERS",
    "dists": ["mlserver", "mlserver-sklearn", "scikit-learn", "numpy"],
}

TRITON_SERVER = """
import logging
import os

import joblib
import numpy as np
from pytriton.decorators import batch
from pytriton.model_config import ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig

# PyTriton says nothing unless logging is configured: its start-up steps go to docker logs.
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
model = joblib.load("/opt/peer/model/model.joblib")


@batch
def infer(**inputs):
    return {"output-0": model.predict(inputs["input-0"]).astype(np.int64).reshape(-1, 1)}


# Dynamic batching on (PyTriton's default with max_batch_size), as Triton users run it; the
# callable given N times is N model instances (PyTriton's knob; the bench's --workers).
instances = int(os.environ.get("PEER_INSTANCES", "1"))
with Triton(config=TritonConfig(http_port=8080, grpc_port=8081, metrics_port=8082)) as triton:
    triton.bind(
        model_name="iris",
        infer_func=[infer] * instances,
        inputs=[Tensor(name="input-0", dtype=np.float64, shape=(4,))],
        outputs=[Tensor(name="output-0", dtype=np.int64, shape=(1,))],
        config=ModelConfig(max_batch_size=64),
    )
    triton.serve()
"""

PYTRITON: dict[str, Any] = {
    "requirements": ["nvidia-pytriton", "scikit-learn", "joblib"],
    "files": {"model/.keep": "", "serve.py": TRITON_SERVER},
    "tail": 'CMD ["python", "/opt/peer/serve.py"]',
    "run": ["--shm-size", "256m"],
    "workers": "PEER_INSTANCES",
    "dists": ["nvidia-pytriton", "tritonclient", "scikit-learn", "numpy"],
}

PEERS = {"mlserver": MLSERVER, "pytriton": PYTRITON}
OURS_DISTS = ["uvicorn", "scikit-learn", "numpy"]


class NotReady(RuntimeError):
    """A server that never answered an inference: its state and last log lines."""


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


def build_ours(runtime: Any, tmp: Path) -> tuple[str, float]:
    model = LogisticRegression(max_iter=500).fit(*load_iris(return_X_y=True))
    options = ExportOptions(example="X[:4]", folder=tmp / "ours")
    result = export_from_namespace(
        {"iris": model, "X": X}, "iris", options, runtime=runtime, version=__version__,
        say=lambda line: None,
    )  # fmt: skip
    assert result.image is not None
    return result.image, result.build_seconds


class Containers:
    """Every container this run started, so that the end removes them, however it ends."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    def start(self, ref: str, port: int, extra: list[str]) -> str:
        args = ["run", "-d", "--label", LABEL, "-p", f"127.0.0.1:{port}:8080", *extra, ref]
        cid = docker(*args).strip()
        self.ids.append(cid)
        return cid

    def remove(self, cid: str) -> None:
        subprocess.run(["docker", "rm", "-f", cid], capture_output=True)
        if cid in self.ids:
            self.ids.remove(cid)

    def remove_all(self) -> None:
        for cid in list(self.ids):
            self.remove(cid)


def answer(port: int, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    """Status and body of one request. Only the status is read for health: MLServer and
    Triton answer ready with an empty body, not JSON (what stopped the last run's probe)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body, headers)
        reply = conn.getresponse()
        return reply.status, reply.read()
    finally:
        conn.close()


def last_lines(cid: str, n: int = 25) -> str:
    logs = subprocess.run(["docker", "logs", "--tail", str(n), cid], capture_output=True, text=True)
    return (logs.stdout + logs.stderr).strip() or "(the container printed nothing)"


def wait_ready(cid: str, port: int, t0: float, timeout: float) -> float:
    """Seconds from ``t0`` (before `docker run`) to the first answered inference."""
    said = "no answer yet"
    checked = t0
    while time.perf_counter() - t0 < timeout:
        try:
            status, _ = answer(port, "GET", "/v2/health/ready")
            said = f"GET /v2/health/ready: {status}"
            if status == 200:
                status, reply = answer(port, "POST", INFER, BODIES[0])
                said = f"POST {INFER}: {status} {reply[:300]!r}"
                if status == 200 and "outputs" in json.loads(reply):
                    return time.perf_counter() - t0
        except (OSError, http.client.HTTPException, ValueError) as exc:
            said = f"{type(exc).__name__}: {exc}"
        if time.perf_counter() - checked > 3:
            checked = time.perf_counter()
            state = docker("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", cid)
            if not state.startswith("running"):
                raise NotReady(f"container exited ({state.strip()}); last log lines:\n"
                               + last_lines(cid))  # fmt: skip
        time.sleep(0.05)
    raise NotReady(
        f"no inference answered {timeout:.0f} s after `docker run` (last: {said}); "
        f"last log lines:\n{last_lines(cid)}"
    )


X = load_iris(return_X_y=True)[0]
BODIES = [
    json.dumps(
        {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": list(r)}]}
    ).encode()
    for r in X[:50]
]


def versions(ref: str, dists: list[str]) -> str:
    code = (
        "import importlib.metadata as m, sys\n"
        "def v(d):\n"
        "    try:\n        return m.version(d)\n"
        "    except m.PackageNotFoundError:\n        return '-'\n"
        "print(', '.join(f'{d} {v(d)}' for d in sys.argv[1:]))"
    )
    out = subprocess.run(
        ["docker", "run", "--rm", "--label", LABEL, "--network", "none", "--entrypoint",
         "/opt/venv/bin/python", ref, "-c", code, *dists],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    return out.stdout.strip() or out.stderr.strip()[-200:]


def measure(
    boxes: Containers, ref: str, extra: list[str], args: argparse.Namespace, clients: list[int]
) -> dict[str, Any]:
    colds = []
    for _ in range(args.starts):
        port = smoke.free_port()
        t0 = time.perf_counter()
        cid = boxes.start(ref, port, extra)
        try:
            colds.append(wait_ready(cid, port, t0, args.ready_timeout))
        finally:
            boxes.remove(cid)
    port = smoke.free_port()
    cid = boxes.start(ref, port, extra)
    runs = {}
    try:
        wait_ready(cid, port, time.perf_counter(), args.ready_timeout)
        for c in clients:
            bench.throughput(port, INFER, BODIES, min(500, args.requests), c)  # warm up
            runs[c] = bench.throughput(port, INFER, BODIES, args.requests, c)
    finally:
        boxes.remove(cid)
    size = int(docker("image", "inspect", "--format", "{{.Size}}", ref))
    return {"cold": colds, "runs": runs, "size": size}


def report(results: dict[str, dict[str, Any]], clients: list[int], base_size: int) -> None:
    head = "".join(f" {f'c={c} req/s':>11} {'p50/p99 ms':>13}" for c in clients)
    print(f"{'':9} {'build s':>7} {'MB':>5} {'+MB':>5} {'ready s':>7}{head}")
    for name, r in results.items():
        if "error" in r:
            print(f"{name:9} FAILED: {r['error']}")
            continue
        cells = ""
        for c in clients:
            lat, rps, failures = r["runs"][c]
            bad = f" ({len(failures)} failed)" if failures else ""
            cells += f" {rps:11.0f} {bench.pct(lat, 0.5):6.2f}/{bench.pct(lat, 0.99):<6.2f}{bad}"
        mib, grown = r["size"] / 2**20, (r["size"] - base_size) / 2**20
        ready = statistics.median(r["cold"])
        print(f"{name:9} {r['build']:7.0f} {mib:5.0f} {grown:5.0f} {ready:7.2f}{cells}")
    ours = results.get("ours", {})
    if "runs" not in ours:
        return
    print("\nours against each peer (ours/peer for req/s; peer/ours for p99, ready and +MB):")
    for name, r in results.items():
        if name == "ours" or "runs" not in r:
            continue
        ratios = []
        for c in clients:
            (olat, orps, _), (plat, prps, _) = ours["runs"][c], r["runs"][c]
            p99 = bench.pct(plat, 0.99) / bench.pct(olat, 0.99)
            ratios.append(f"c={c}: {orps / prps:.2f}x req/s, p99 {p99:.2f}x")
        ready = statistics.median(r["cold"]) / statistics.median(ours["cold"])
        grow = (r["size"] - base_size) / (ours["size"] - base_size)
        print(f"  {name}: {'; '.join(ratios)}; ready {ready:.2f}x; +MB {grow:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--clients", default="1,8,32,64")
    parser.add_argument("--starts", type=int, default=3)
    parser.add_argument("--only", default="ours,mlserver,pytriton")
    parser.add_argument("--ready-timeout", type=float, default=90)
    parser.add_argument("--build-only", action="store_true")
    parser.add_argument("--reuse", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the images built")
    parser.add_argument(
        "--workers",
        type=int,
        help="the same for all: NBC_WORKERS, MLServer's parallel_workers, PyTriton's model "
        "instances (default: each server's own default)",
    )
    args = parser.parse_args()
    clients = [int(c) for c in args.clients.split(",")]
    names = args.only.split(",")
    unknown = set(names) - {"ours", *PEERS}
    if unknown:
        parser.error(f"--only: unknown {sorted(unknown)}; choose from ours,{','.join(PEERS)}")
    runtime = get_runtime()
    if args.build_only:
        with tempfile.TemporaryDirectory() as work:
            for name in (n for n in names if n in PEERS):
                t0 = time.perf_counter()
                try:
                    build_peer(runtime, name, PEERS[name], Path(work))
                    print(f"{name}: built in {time.perf_counter() - t0:.0f} s")
                except Exception as exc:
                    print(f"{name}: build FAILED: {type(exc).__name__}: {str(exc)[-1500:]}")
        return

    # `timeout` and Ctrl-C end the run through the `finally` below, never leaving containers.
    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, stop)
    base_size = int(docker("image", "inspect", "--format", "{{.Size}}", BASE))
    boxes, built = Containers(), []
    results: dict[str, dict[str, Any]] = {}
    try:
        with tempfile.TemporaryDirectory() as work:
            for name in names:
                t0 = time.perf_counter()
                try:
                    if name == "ours":
                        ref, build_s = build_ours(runtime, Path(work))
                        extra, dists = [], OURS_DISTS
                        knob = "NBC_WORKERS"
                    else:
                        ref, build_s = build_peer(runtime, name, PEERS[name], Path(work),
                                                  args.reuse)  # fmt: skip
                        extra, dists = PEERS[name]["run"], PEERS[name]["dists"]
                        knob = PEERS[name]["workers"]
                    if args.workers:
                        extra = [*extra, "-e", f"{knob}={args.workers}"]
                    built.append(ref)
                    print(f"{name}: {ref}: {versions(ref, dists)}", flush=True)
                    results[name] = {"build": build_s, "image": ref}
                    results[name] |= measure(boxes, ref, extra, args, clients)
                    print(f"{name}: measured in {time.perf_counter() - t0:.0f} s", flush=True)
                except Exception as exc:
                    # One server failing still reports the others.
                    text = getattr(exc, "stderr", None) or str(exc)
                    results[name] = {"error": f"{type(exc).__name__}: {text[-2500:]}"}
    finally:
        boxes.remove_all()
        if not args.keep:
            for ref in built:
                subprocess.run(["docker", "image", "rm", "-f", ref], capture_output=True)
    print(
        f"\none iris model, base {BASE} ({base_size / 2**20:.0f} MiB), {args.requests} one-row "
        f"OIP JSON requests per concurrency after {min(500, args.requests)} to warm up, same "
        "client, same run; ready = `docker run` to the first answered inference, median of "
        f"{args.starts}; MB = MiB; build s from BuildKit's cache where it had the layers; "
        + (f"{args.workers} workers each" if args.workers else "each server's default workers")
    )
    report(results, clients, base_size)


if __name__ == "__main__":
    np.seterr(all="ignore")
    try:
        main()
    except KeyboardInterrupt as exc:
        raise SystemExit(
            f"peers.py stopped ({exc or 'Ctrl-C'}); its containers were removed"
        ) from None
