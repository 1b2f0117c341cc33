"""Kernel-ready time and execute round trip on a user's own rootless Podman, against a local
ipykernel started by the same user in the same run (ratios, because machines are noisy).

Run it as the (non-root) user whose engine it measures, e.g. the test user:
    runuser -u nbc-podman -- env -i HOME=/home/nbc-podman PATH=/usr/bin:/bin \\
        XDG_RUNTIME_DIR=/run/user/$(id -u nbc-podman) JUPYTER_PATH=$PWD/.venv/share/jupyter \\
        .venv/bin/python bench/rootless_start.py [--starts 5] [--execs 200] [--all]
runtime "auto" picks the user's Podman; --all adds the bridge and tcp network cases.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from typing import Any

from jupyter_client.manager import KernelManager


def start(kernel: str, config: dict[str, Any], cwd: str) -> tuple[KernelManager, Any, float]:
    km = KernelManager(kernel_name=kernel)
    if config:
        km.kernel_spec.metadata["kernel_provisioner"]["config"].update(config)
    t0 = time.perf_counter()
    km.start_kernel(cwd=cwd)
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=120)
    return km, kc, time.perf_counter() - t0


def round_trip(kc: Any, n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        kc.execute_interactive("pass", timeout=30)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--execs", type=int, default=200)
    parser.add_argument("--all", action="store_true", help="also the bridge and tcp cases")
    args = parser.parse_args()
    cases: list[tuple[str, str, dict[str, Any]]] = [
        ("local ipykernel", "python3", {}),
        ("nbc-python, rootless podman (ipc, shared netns)", "nbc-python", {}),
    ]
    if args.all:
        cases += [
            ("nbc-python, rootless podman (own bridge)", "nbc-python", {"network": "bridge"}),
            ("nbc-python, rootless podman (tcp)", "nbc-python", {"transport": "tcp"}),
        ]
    ready: dict[str, list[float]] = {name: [] for name, _, _ in cases}
    trip: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as cwd:
        for n in range(args.starts):  # interleaved: one start of each case per round
            for name, kernel, config in cases:
                km, kc, seconds = start(kernel, config, cwd)
                ready[name].append(seconds)
                if n == 0:
                    trip[name] = round_trip(kc, args.execs)
                kc.stop_channels()
                km.shutdown_kernel(now=True)
    base_ready = statistics.median(ready["local ipykernel"])
    base_trip = trip["local ipykernel"]
    print(f"{'case':50s} {'ready s':>8s} {'x local':>8s} {'trip ms':>8s} {'x local':>8s}")
    for name, _, _ in cases:
        r = statistics.median(ready[name])
        print(
            f"{name:50s} {r:8.3f} {r / base_ready:8.2f} "
            f"{trip[name] * 1000:8.2f} {trip[name] / base_trip:8.2f}"
        )


if __name__ == "__main__":
    main()
