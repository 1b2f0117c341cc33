"""`%container` overheads: a relayed trivial cell vs the same cell run locally, and
`%container push/pull` of a 1 GiB float32 array vs copying it in memory, in one run.

Usage: python bench/relay.py [--cells 300] [--gib 1]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from notebook_kernel import local_kernel, printed

BATCH = 20


def timed_cells(kc, code: str, n: int, warm: int = 20) -> list[float]:
    for _ in range(warm):
        kc.execute_interactive(code, timeout=30)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        kc.execute_interactive(code, timeout=30)
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cells", type=int, default=300)
    parser.add_argument("--gib", type=float, default=1.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cwd, local_kernel(cwd) as kc:
        printed(kc, "%load_ext nbcontainers")
        relayed: list[float] = []
        local: list[float] = []
        # Short alternating batches: this machine's load drifts within seconds.
        for batch in range(max(1, args.cells // BATCH)):
            printed(kc, "%container use python")
            relayed += timed_cells(kc, "pass", BATCH, warm=20 if batch == 0 else 2)
            printed(kc, "%container local")
            local += timed_cells(kc, "pass", BATCH, warm=20 if batch == 0 else 2)
        n = int(args.gib * 2**30 / 4)
        result = printed(
            kc,
            f"""
import time, numpy as np
big = np.ones({n}, dtype='float32'); big[::4096] = np.arange(len(big[::4096]))
t = time.perf_counter(); copy = big.copy(); t_copy = time.perf_counter() - t; del copy
t = time.perf_counter(); get_ipython().run_line_magic('container', 'push big')
t_push = time.perf_counter() - t
get_ipython().run_cell_magic('container', '', 'big_back = big * 1; del big')
t = time.perf_counter(); get_ipython().run_line_magic('container', 'pull big_back')
t_pull = time.perf_counter() - t
assert np.array_equal(big_back, big)
print(t_copy, t_push, t_pull)
""",
        )
        t_copy, t_push, t_pull = map(float, result.split())
        printed(kc, "%container stop")
    cells = len(local)
    local_ms, relayed_ms = statistics.median(local), statistics.median(relayed)
    size = args.gib * 2**30 / 1e9
    print(
        f"trivial cell round trip (median of {cells}, {cells // BATCH} interleaved batches): "
        f"local {local_ms * 1e3:.2f} ms, relayed {relayed_ms * 1e3:.2f} ms, "
        f"ratio {relayed_ms / local_ms:.2f}"
    )
    print(
        f"{args.gib:g} GiB float32: in-memory copy {t_copy:.3f} s ({size / t_copy:.2f} GB/s); "
        f"push {t_push:.3f} s ({size / t_push:.2f} GB/s, {t_push / t_copy:.2f}x copy); "
        f"pull {t_pull:.3f} s ({size / t_pull:.2f} GB/s, {t_pull / t_copy:.2f}x copy)"
    )


if __name__ == "__main__":
    main()
