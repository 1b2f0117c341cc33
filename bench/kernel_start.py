"""Kernel-ready time and execute round trip: local ipykernel vs nbc-python (image cached).

Prints medians and ratios against the local kernel measured in the same run, because the
machines are shared and noisy. Usage: python bench/kernel_start.py [--starts 5] [--execs 300]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from typing import Any

from jupyter_client.manager import KernelManager


def measure(
    kernel: str, config: dict[str, Any], starts: int, execs: int, cwd: str
) -> tuple[list[float], list[float]]:
    ready, trips = [], []
    for i in range(starts):
        km = KernelManager(kernel_name=kernel)
        if config:
            km.kernel_spec.metadata["kernel_provisioner"]["config"].update(config)
        t0 = time.perf_counter()
        km.start_kernel(cwd=cwd)
        kc = km.client()
        kc.start_channels()
        kc.wait_for_ready(timeout=60)
        ready.append(time.perf_counter() - t0)
        if i == 0:  # round trips on the first kernel only; warm it up first
            for _ in range(20):
                kc.execute_interactive("pass", timeout=10)
            for _ in range(execs):
                t1 = time.perf_counter()
                kc.execute_interactive("pass", timeout=10)
                trips.append(time.perf_counter() - t1)
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    return ready, trips


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--execs", type=int, default=300)
    args = parser.parse_args()
    cases = [
        ("local ipykernel", "python3", {}),
        ("nbc-python (ipc)", "nbc-python", {"transport": "ipc"}),
        ("nbc-python (tcp, 127.0.0.1)", "nbc-python", {"transport": "tcp"}),
        ("nbc-python (host network)", "nbc-python", {"transport": "tcp", "network": "host"}),
    ]
    results = {}
    with tempfile.TemporaryDirectory() as cwd:
        for label, kernel, config in cases:
            results[label] = measure(kernel, config, args.starts, args.execs, cwd)
    base_ready = statistics.median(results["local ipykernel"][0])
    base_trip = statistics.median(results["local ipykernel"][1])
    print(
        f"{'case':<30} {'ready med (min-max) s':>24} {'ratio':>6} "
        f"{'round trip med ms':>18} {'p90 ms':>7} {'ratio':>6}"
    )
    for label, (ready, trips) in results.items():
        r, t = statistics.median(ready), statistics.median(trips)
        p90 = statistics.quantiles(trips, n=10)[-1]
        print(
            f"{label:<30} {r:>8.3f} ({min(ready):.3f}-{max(ready):.3f}) {r / base_ready:>6.2f} "
            f"{t * 1e3:>18.2f} {p90 * 1e3:>7.2f} {t / base_trip:>6.2f}"
        )


if __name__ == "__main__":
    main()
