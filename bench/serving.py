"""`%export-serving` figures for one small scikit-learn model (iris, as in DESIGN.md's serving
anchors), all from one run: image size with its layer breakdown, cold start to ready (median
of several starts) with where the time goes, and a load test: N requests (10,000) at 64
concurrent, one in ten malformed (bad JSON, deep nesting, wrong names, wrong shapes,
oversized), once with the good ones in JSON and once with the binary tensor extension.
Every good request must get 200, every bad one a 4xx, and the server must be live after;
throughput and p50/p99 of the good ones are printed against the in-process model call
measured in the same run. Then a CPU-heavy model (a random forest of 300 trees) served by 1
and by N worker processes (``NBC_WORKERS``, N = this machine's CPUs) from the same image:
throughput and p50/p99 at the same concurrency, in the same run.

Usage: python bench/serving.py [--requests N] [--clients C] [--starts K] [--grpc]
                               [--forest-requests N] [--workers N]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.datasets import load_iris, make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from nbcontainers import __version__
from nbcontainers.runtimes import get_runtime
from nbcontainers.serving import smoke
from nbcontainers.serving.export import ExportOptions, export_from_namespace

BASE = "nbcontainers/base:bookworm"
PATH = "/v2/models/iris/infer"

# Run in the image: where a start's time goes (imports, then the model load).
PROFILE = """
import json, subprocess, sys, time
t0 = time.perf_counter()
sys.path.insert(0, "/opt/nbc/server")
import uvicorn.main, uvicorn.protocols.http.httptools_impl, uvicorn.loops.uvloop  # noqa
t1 = time.perf_counter()
import server
t2 = time.perf_counter()
meta = json.load(open("/opt/nbc/model/meta.json"))
predict = server.load_model("/opt/nbc/model", meta, "/opt/nbc/cache")
t3 = time.perf_counter()
top = subprocess.run([sys.executable, "-X", "importtime", "-c",
    "import sys; sys.path.insert(0, '/opt/nbc/server'); import uvicorn.main, server, json;"
    "server.load_model('/opt/nbc/model', json.load(open('/opt/nbc/model/meta.json')),"
    " '/opt/nbc/cache')"],
    capture_output=True, text=True).stderr
rows = []
for line in top.splitlines()[1:]:
    parts = line.split("|")
    if len(parts) == 3 and parts[2].startswith(" ") and not parts[2].startswith("  "):
        rows.append((int(parts[1]), parts[2].strip()))
print(json.dumps({"uvicorn": t1 - t0, "server+numpy": t2 - t1, "model load": t3 - t2,
                  "top": sorted(rows, reverse=True)[:8]}))
"""


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True).stdout


def layers(ref: str) -> list[tuple[int, str]]:
    out = docker(
        "history", "--no-trunc", "--human=false", "--format", "{{.Size}}\t{{.CreatedBy}}", ref
    )
    rows = []
    for line in out.splitlines():
        size, _, step = line.partition("\t")
        if int(size) > 10_000:
            rows.append((int(size), step.replace("/bin/sh -c ", "")[:70]))
    return rows


def bodies(
    X: Any, binary: bool
) -> tuple[list[tuple[bytes, dict[str, str]]], list[tuple[bytes, str]]]:
    """Good requests (one row each, JSON or binary) and the malformed kinds."""
    good = []
    for row in X[:50]:
        if binary:
            header = json.dumps(
                {
                    "inputs": [
                        {
                            "name": "input-0",
                            "shape": [1, 4],
                            "datatype": "FP64",
                            "parameters": {"binary_data_size": 32},
                        }
                    ],
                    "parameters": {"binary_data_output": True},
                }
            ).encode()
            good.append(
                (
                    header + np.asarray(row, dtype="<f8").tobytes(),
                    {"Inference-Header-Content-Length": str(len(header))},
                )
            )
        else:
            tensor = {"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": list(row)}
            good.append((json.dumps({"inputs": [tensor]}).encode(), {}))
    tensor = {"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [1.0, 2.0, 3.0, 4.0]}
    bad = [
        (b'{"inputs": [{"name": ', "bad JSON"),
        (b"[" * 10_000 + b"]" * 10_000, "deep nesting"),
        (json.dumps({"inputs": [tensor | {"name": "features"}]}).encode(), "wrong name"),
        (json.dumps({"inputs": [tensor | {"shape": [-1, 4]}]}).encode(), "wrong shape"),
        (b"[" + b"0," * (4 << 20) + b"0]", "oversized"),
    ]
    return good, bad


def load_test(
    port: int, X: Any, binary: bool, n: int, clients: int
) -> tuple[list[float], float, dict[str, int], list[str]]:
    """Latencies of the good requests, good requests per second, bad statuses, failures."""
    good, bad = bodies(X, binary)
    plan = [(i % 10 == 9, i) for i in range(n)]
    lat: list[float] = []
    statuses: dict[str, int] = {}
    failures: list[str] = []
    lock = threading.Lock()

    def worker(items: list[tuple[bool, int]]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine, seen, wrong = [], {}, []
        for is_bad, i in items:
            if is_bad:
                body, kind = bad[(i // 10) % len(bad)]
                headers: dict[str, str] = {}
            else:
                body, headers = good[i % len(good)]
                kind = ""
            t0 = time.perf_counter()
            try:
                conn.request("POST", PATH, body, {"Content-Type": "application/json", **headers})
                reply = conn.getresponse()
                reply.read()
                status = reply.status
            except (OSError, http.client.HTTPException) as exc:
                status, conn = -1, http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                wrong.append(f"{kind or 'good'}: {type(exc).__name__}")
            took = time.perf_counter() - t0
            if is_bad:
                seen[f"{kind} {status}"] = seen.get(f"{kind} {status}", 0) + 1
                if not 400 <= status < 500:
                    wrong.append(f"{kind}: {status}")
                if status == 413:
                    conn.close()  # the server closes after an oversized body
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            else:
                mine.append(took)
                if status != 200:
                    wrong.append(f"good: {status}")
        with lock:
            lat.extend(mine)
            failures.extend(wrong)
            for key, count in seen.items():
                statuses[key] = statuses.get(key, 0) + count

    threads = [threading.Thread(target=worker, args=(plan[c::clients],)) for c in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return lat, len(lat) / (time.perf_counter() - t0), statuses, failures


def in_process(call: Callable[[], Any], n: int, clients: int) -> tuple[list[float], float]:
    lat: list[float] = []
    lock = threading.Lock()

    def worker(count: int) -> None:
        mine = []
        for _ in range(count):
            t0 = time.perf_counter()
            call()
            mine.append(time.perf_counter() - t0)
        with lock:
            lat.extend(mine)

    threads = [threading.Thread(target=worker, args=(n // clients,)) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return lat, len(lat) / (time.perf_counter() - t0)


def cold_starts(runtime: Any, ref: str, count: int) -> list[float]:
    times = []
    for _ in range(count):
        served = smoke.start(runtime, ref, "iris")
        try:
            times.append(smoke.wait_ready(runtime, served))
        finally:
            runtime.stop(served.container_id, timeout=5)
            runtime.remove(served.container_id)
    return times


def serve_with_workers(ref: str, workers: int) -> tuple[str, int]:
    """Start ``ref`` with ``NBC_WORKERS=workers`` as the manifests run it (read-only root,
    loopback port); its container id and port once ready."""
    port = smoke.free_port()
    cid = docker(
        "run", "-d", "--read-only", "--tmpfs", "/tmp:rw,size=256m", "--cap-drop", "ALL",
        "-e", f"NBC_WORKERS={workers}", "-p", f"127.0.0.1:{port}:8080", ref,
    ).strip()  # fmt: skip
    deadline = time.monotonic() + 120
    while True:
        try:
            smoke.request(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2)
            return cid, port
        except Exception:
            if time.monotonic() > deadline:
                logs = subprocess.run(["docker", "logs", cid], capture_output=True, text=True)
                docker("rm", "-f", cid)
                raise RuntimeError(
                    f"not ready with {workers} workers: {logs.stderr[-2000:]}"
                ) from None
            time.sleep(0.2)


def server_processes(cid: str) -> int:
    """Python processes in the container: the workers (and a supervisor when there are
    several), as ``docker top`` lists them."""
    return sum("python" in line for line in docker("top", cid).splitlines()[1:])


def throughput(
    port: int, path: str, bodies: list[bytes], n: int, clients: int
) -> tuple[list[float], float, list[str]]:
    """Latencies, requests per second and failures of ``n`` good requests at ``clients``."""
    lat: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()

    def worker(count: int, offset: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine, wrong = [], []
        for i in range(count):
            t0 = time.perf_counter()
            try:
                conn.request("POST", path, bodies[(offset + i) % len(bodies)])
                reply = conn.getresponse()
                reply.read()
                if reply.status != 200:
                    wrong.append(str(reply.status))
            except (OSError, http.client.HTTPException) as exc:
                wrong.append(type(exc).__name__)
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            mine.append(time.perf_counter() - t0)
        with lock:
            lat.extend(mine)
            failures.extend(wrong)

    threads = [threading.Thread(target=worker, args=(n // clients, c)) for c in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return lat, len(lat) / (time.perf_counter() - t0), failures


def forest_workers(
    runtime: Any, tmp: str, requests: int, clients: int, workers: int
) -> tuple[dict[int, tuple[list[float], float, list[str], int]], Any, float, str]:
    """The forest served by 1 and by ``workers`` processes, and in process; its image ref."""
    X, y = make_classification(n_samples=2000, n_features=20, random_state=0)
    forest = RandomForestClassifier(n_estimators=300, random_state=0).fit(X, y)
    options = ExportOptions(example="X[:4]", folder=Path(tmp) / "forest")
    result = export_from_namespace(
        {"forest": forest, "X": X}, "forest", options, runtime=runtime, version=__version__
    )
    assert result.image is not None
    tensors = [
        {"name": "input-0", "shape": [1, 20], "datatype": "FP64", "data": list(r)} for r in X
    ]
    bodies = [json.dumps({"inputs": [t]}).encode() for t in tensors[:200]]
    runs = {}
    try:
        for count in (1, workers):
            cid, port = serve_with_workers(result.image, count)
            try:
                seen = server_processes(cid)
                throughput(port, "/v2/models/forest/infer", bodies, 200, clients)  # warm up
                runs[count] = (
                    *throughput(port, "/v2/models/forest/infer", bodies, requests, clients),
                    seen,
                )
            finally:
                docker("rm", "-f", cid)
    finally:
        runtime.remove_image(result.image)
    local = in_process(lambda: forest.predict(X[:1]), 400, 1)
    return runs, local, result.build_seconds, result.image


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--grpc", action="store_true")
    parser.add_argument("--forest-requests", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    X, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500).fit(X, y)
    runtime = get_runtime()
    base = runtime.image_info(BASE)
    with tempfile.TemporaryDirectory() as tmp:
        options = ExportOptions(example="X[:4]", folder=Path(tmp) / "iris", grpc=args.grpc)
        t0 = time.perf_counter()
        result = export_from_namespace(
            {"iris": model, "X": X}, "iris", options, runtime=runtime, version=__version__
        )
        t_export = time.perf_counter() - t0
    assert result.image is not None
    try:
        history = layers(result.image)
        starts = cold_starts(runtime, result.image, args.starts)
        profile = json.loads(
            docker(
                "run",
                "--rm",
                "--network",
                "none",
                "--entrypoint",
                "/opt/venv/bin/python",
                result.image,
                "-c",
                PROFILE,
            )
        )
        served = smoke.start(runtime, result.image, "iris")
        try:
            smoke.wait_ready(runtime, served)
            port = int(served.url.rsplit(":", 1)[1])
            row = X[:1]
            runs = {}
            for label, binary in (("JSON", False), ("binary", True)):
                load_test(port, X, binary, 500, args.clients)  # warm up
                runs[label] = load_test(port, X, binary, args.requests, args.clients)
            live = smoke.request(served.url + "/v2/health/live")
            local = {c: in_process(lambda: model.predict(row), 4000, c) for c in (1, args.clients)}
        finally:
            runtime.stop(served.container_id, timeout=5)
            runtime.remove(served.container_id)
    finally:
        runtime.remove_image(result.image)
    forest = None
    if args.forest_requests:  # 0 skips the forest
        with tempfile.TemporaryDirectory() as tmp:
            forest = forest_workers(runtime, tmp, args.forest_requests, args.clients, args.workers)

    print(
        f"export (capture + lock + build + smoke test): {t_export:.1f} s; "
        f"build {result.build_seconds:.1f} s"
    )
    growth = f", +{(result.size - base.size) / 1e6:.0f} MB over {BASE}" if base else ""
    print(f"image {result.image}: {result.size / 1e6:.0f} MB{growth}; layers over 10 kB:")
    for size, step in history:
        print(f"  {size / 1e6:7.1f} MB  {step}")
    print(
        f"cold start to ready ({len(starts)} starts): median {statistics.median(starts):.2f} s, "
        f"min {min(starts):.2f} s, max {max(starts):.2f} s"
    )
    print(
        "  in the image: "
        + ", ".join(f"{k} {profile[k]:.3f} s" for k in ("uvicorn", "server+numpy", "model load"))
    )
    print(
        "  slowest imports (cumulative): "
        + ", ".join(f"{name} {us / 1000:.0f} ms" for us, name in profile["top"])
    )
    print(f"load test: {args.requests} requests at {args.clients} concurrent, 1 in 10 malformed")
    print(f"{'':22} {'p50 ms':>8} {'p99 ms':>8} {'good req/s':>11}")
    ok = True
    for label, (lat, rps, statuses, failures) in runs.items():
        print(f"{'served ' + label:<22} {pct(lat, 0.5):8.3f} {pct(lat, 0.99):8.3f} {rps:11.0f}")
        print(f"  malformed: {', '.join(f'{k}: {v}' for k, v in sorted(statuses.items()))}")
        if failures:
            ok = False
            print(f"  FAILURES ({len(failures)}): {failures[:10]}")
    for clients, (lat, rps) in local.items():
        label = f"in-process c={clients}"
        print(f"{label:<22} {pct(lat, 0.5):8.3f} {pct(lat, 0.99):8.3f} {rps:11.0f}")
    json_p50 = statistics.median(runs["JSON"][0])
    local_p50 = statistics.median(local[args.clients][0])
    print(
        f"p50 served JSON / in-process at c={args.clients}: {json_p50 / local_p50:.1f}x; "
        f"every good request 200 and every bad one 4xx: {ok}; live after: {live}"
    )
    if forest is None:
        return
    runs_w, (local_lat, local_rps), build_s, _ = forest
    print(
        f"random forest, 300 trees, 20 features (build {build_s:.0f} s): "
        f"{args.forest_requests} one-row JSON requests at {args.clients} concurrent"
    )
    print(f"{'':22} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>11}  python processes")
    for count, (lat, rps, failures, seen) in runs_w.items():
        label = f"served NBC_WORKERS={count}"
        print(f"{label:<22} {pct(lat, 0.5):8.3f} {pct(lat, 0.99):8.3f} {rps:11.0f}  {seen}")
        if failures:
            print(f"  FAILURES ({len(failures)}): {sorted(set(failures))[:10]}")
    print(f"{'in-process c=1':<22} {pct(local_lat, 0.5):8.3f} {pct(local_lat, 0.99):8.3f} "
          f"{local_rps:11.0f}")  # fmt: skip
    if len(runs_w) == 2:
        one, many = (runs_w[c][1] for c in sorted(runs_w))
        print(f"{max(runs_w)} workers / 1 worker: {many / one:.2f}x on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
