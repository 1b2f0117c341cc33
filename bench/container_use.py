"""`%container use python` in a notebook: how long the cell takes, cold and from a warm pool.

Each round runs one notebook per case with nbclient, in a fresh local kernel: cold (no pool)
and pooled (``NBCONTAINERS_POOL_SIZE=1``, ``NBCONTAINERS_POOL_WARM=python``, waiting until
the warmed member is ready before the cell). The figure is the cell's own time (from its
``execute_input`` to its reply, as nbclient records it), the median over the rounds, printed
beside a trivial local cell of the same notebooks and as a ratio against the cold use measured
in the same run, because these machines are shared and noisy.

Usage: python bench/container_use.py [--rounds 5]   (the python image must be built)
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import tempfile
from typing import Any
from unittest import mock

import nbformat
from nbclient import NotebookClient

WAIT_FOR_MEMBER = (
    "import time\nfrom nbcontainers.kernels.pool import kernel_pool\n"
    "deadline = time.monotonic() + 60\n"
    "while kernel_pool().idle().get('python', 0) < 1 and time.monotonic() < deadline:\n"
    "    time.sleep(0.05)"
)


def _seconds(cell: Any) -> float:
    times = cell.metadata["execution"]
    start = datetime.datetime.fromisoformat(times["iopub.execute_input"].replace("Z", "+00:00"))
    end = datetime.datetime.fromisoformat(times["shell.execute_reply"].replace("Z", "+00:00"))
    return (end - start).total_seconds()


def run(pooled: bool) -> tuple[float, float]:
    """One notebook: (seconds of a trivial local cell, seconds of `%container use python`)."""
    cells = ["%load_ext nbcontainers", WAIT_FOR_MEMBER if pooled else "pass", "pass"]
    cells += ["%container use python", "%container stop"]
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    env = {"NBCONTAINERS_POOL_SIZE": "1" if pooled else "0"}
    env["NBCONTAINERS_POOL_WARM"] = "python" if pooled else ""
    with mock.patch.dict(os.environ, env), tempfile.TemporaryDirectory() as folder:
        client = NotebookClient(
            nb,
            kernel_name="python3",
            timeout=180,
            record_timing=True,
            resources={"metadata": {"path": folder}},
        )
        client.execute()
    return _seconds(nb.cells[2]), _seconds(nb.cells[3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    figures: dict[str, list[tuple[float, float]]] = {"cold": [], "warm pool": []}
    run(False)  # warm-up (page cache, the network holder), not counted
    for _ in range(args.rounds):
        for label, pooled in (("cold", False), ("warm pool", True)):
            figures[label].append(run(pooled))
    cold = statistics.median(use for _, use in figures["cold"])
    print(f"%container use python, cell time, median of {args.rounds} notebooks per case")
    print(f"{'case':<10} {'use s (min-max)':>18} {'x cold':>7} {'local cell ms':>14}")
    for label, rows in figures.items():
        uses = [use for _, use in rows]
        local = statistics.median(cell for cell, _ in rows)
        use = statistics.median(uses)
        print(
            f"{label:<10} {use:>6.3f} ({min(uses):.2f}-{max(uses):.2f}) {use / cold:>7.2f}"
            f" {local * 1e3:>14.1f}"
        )


if __name__ == "__main__":
    main()
