"""`%export-serving` figures, in one run, for one small scikit-learn model (iris, as in
DESIGN.md's serving anchors): build time, image size, cold start to ready, and p50/p99
latency and throughput at concurrency 1 and 32 of the served model against calling the
same model in-process. The single-request overhead is container p50 minus in-process p50.

Usage: python bench/serving.py [--requests N]
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from nbcontainers import __version__
from nbcontainers.runtimes import get_runtime
from nbcontainers.serving.export import ExportOptions, export_from_namespace


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def in_process(model: Any, row: Any, n: int, clients: int) -> tuple[list[float], float]:
    """Latencies of model.predict(one row), and calls per second from ``clients`` threads."""
    lat: list[float] = []
    lock = threading.Lock()

    def worker(count: int) -> None:
        mine = []
        for _ in range(count):
            t0 = time.perf_counter()
            model.predict(row)
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


def served(port: int, body: bytes, n: int, clients: int) -> tuple[list[float], float]:
    """Latencies of one-row OIP infer requests over keep-alive connections, and requests/s."""
    lat: list[float] = []
    lock = threading.Lock()
    headers = {"Content-Type": "application/json"}

    def worker(count: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port)
        mine = []
        for _ in range(count):
            t0 = time.perf_counter()
            conn.request("POST", "/v2/models/iris/infer", body, headers)
            reply = conn.getresponse()
            reply.read()
            mine.append(time.perf_counter() - t0)
            assert reply.status == 200
        conn.close()
        with lock:
            lat.extend(mine)

    worker(50)  # warm the connection path
    lat.clear()
    threads = [threading.Thread(target=worker, args=(n // clients,)) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return lat, len(lat) / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    X, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500).fit(X, y)
    runtime = get_runtime()
    base = runtime.image_info("nbcontainers/base:bookworm")
    with tempfile.TemporaryDirectory() as tmp:
        options = ExportOptions(example="X[:4]", folder=Path(tmp) / "iris", run=True)
        t0 = time.perf_counter()
        result = export_from_namespace(
            {"iris": model, "X": X},
            "iris",
            options,
            runtime=runtime,
            say=lambda _: None,
            version=__version__,
        )
        t_export = time.perf_counter() - t0
        try:
            assert result.served is not None
            port = int(result.served.url.rsplit(":", 1)[1])
            row = X[:1]
            body = json.dumps(
                {
                    "inputs": [
                        {
                            "name": "input-0",
                            "shape": [1, 4],
                            "datatype": "FP64",
                            "data": row.reshape(-1).tolist(),
                        }
                    ]
                }
            ).encode()
            figures = {}
            for clients in (1, 32):
                n = args.requests if clients == 1 else args.requests * 2
                figures[clients] = (
                    in_process(model, row, n, clients),
                    served(port, body, n, clients),
                )
        finally:
            result.stop()
    build = result.build_seconds
    print(f"export (capture + lock + build + smoke test): {t_export:.1f} s; build {build:.1f} s")
    growth = f" (+{(result.size - base.size) / 1e6:.0f} MB over the Debian base)" if base else ""
    print(f"image {result.image}: {result.size / 1e6:.0f} MB{growth}")
    print(f"cold start to ready: {result.ready_seconds:.2f} s")
    print(f"{'':18} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8}")
    for clients, pair in figures.items():
        for label, (lat, rps) in zip(("in-process", "container"), pair, strict=True):
            p50, p99 = pct(lat, 0.5), pct(lat, 0.99)
            print(f"{label:<11} c={clients:<3} {p50:8.3f} {p99:8.3f} {rps:8.0f}")
    (lat_in, _), (lat_srv, _) = figures[1]
    overhead = (statistics.median(lat_srv) - statistics.median(lat_in)) * 1000
    print(
        f"single-request overhead (p50 container - p50 in-process, c=1): {overhead:.2f} ms "
        f"(goal < 2 ms); p50 ratio {statistics.median(lat_srv) / statistics.median(lat_in):.1f}x"
    )


if __name__ == "__main__":
    main()
