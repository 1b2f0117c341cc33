"""`%export-serving` figures, in one run, for one small scikit-learn model (iris, as in
DESIGN.md's serving anchors): build time, image size, cold start to ready, and p50/p99
latency and throughput at concurrency 1 and 32 of the served model against calling the
same model in-process. The single-request overhead is container p50 minus in-process p50.

Usage: python bench/serving.py [--requests N] [--cold]
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from nbcontainers import __version__
from nbcontainers.runtimes import get_runtime
from nbcontainers.runtimes.buildkit import find_builder
from nbcontainers.serving.export import ExportOptions, export_from_namespace


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def measure(
    make_call: Callable[[], Callable[[], None]], n: int, clients: int
) -> tuple[list[float], float]:
    """Latencies of ``n`` calls spread over ``clients`` threads (each with its own
    ``make_call()``: its own connection), and calls per second."""
    lat: list[float] = []
    lock = threading.Lock()

    def worker(count: int) -> None:
        call = make_call()
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


def http_caller(port: int, body: bytes) -> Callable[[], Callable[[], None]]:
    """One keep-alive connection per thread, sending one-row OIP infer requests."""
    headers = {"Content-Type": "application/json"}

    def make() -> Callable[[], None]:
        conn = http.client.HTTPConnection("127.0.0.1", port)

        def call() -> None:
            conn.request("POST", "/v2/models/iris/infer", body, headers)
            reply = conn.getresponse()
            reply.read()
            assert reply.status == 200

        return call

    return make


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--cold", action="store_true", help="prune the build cache first")
    args = parser.parse_args()
    if args.cold:
        client = find_builder().argv[0]
        subprocess.run([client, "builder", "prune", "-af"], check=True, capture_output=True)
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
            measure(http_caller(port, body), 50, 1)  # warm up the server's code paths
            for clients in (1, 32):
                n = args.requests if clients == 1 else args.requests * 2
                figures[clients] = (
                    measure(lambda: lambda: model.predict(row), n, clients),
                    measure(http_caller(port, body), n, clients),
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
