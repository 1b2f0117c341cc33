"""Kernel-ready time and execute round trip: local ipykernel vs nbc-python (image cached).

Two readiness figures per start: "answers", when the kernel first replies to kernel_info
(what a frontend waits for), and "ready", when jupyter_client's wait_for_ready() returns:
that adds its own IOPub flush, a fixed 0.2 s wait for silence, to every kernel alike.
The warm-pool cases take a pooled container (c.ContainerProvisioner.pool_size), whose kernel
was started up to the user's code before the start (or, with a Python config file, not at
all); each start of every case waits until the pools are full again first, so no refill runs
while one is timed.

Cases are interleaved (one start of each case per round, then round trips in alternating
batches), and every figure is printed as a ratio against the local kernel measured in the
same run, because these machines are shared and noisy.

Usage: python bench/kernel_start.py [--starts 7] [--execs 400] [--swarm NODE]

``--swarm NODE`` adds kernels on that Swarm node (this host must be a manager; for the test
swarm: `bash scripts/ensure-swarm.sh up` with NBC_SWARM_IMAGES naming the python image), with
and without CurveZMQ, and Curve's cost on a plain Docker kernel.

The nbc-python cases run on the engine ``runtime = "auto"`` picks for whoever runs this: as
root, the system Docker engine; as a user with Podman, that user's rootless engine, e.g.
    runuser -u nbc-podman -- env -i HOME=/home/nbc-podman PATH=/usr/bin:/bin \
        XDG_RUNTIME_DIR=/run/user/$(id -u nbc-podman) JUPYTER_PATH=$PWD/.venv/share/jupyter \
        .venv/bin/python bench/kernel_start.py
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from queue import Empty
from typing import Any

from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager

CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("local ipykernel", "python3", {}),
    ("nbc-python (ipc, shared netns)", "nbc-python", {}),
    ("nbc-python (ipc, own bridge netns)", "nbc-python", {"network": "bridge"}),
    ("nbc-python (tcp on 127.0.0.1)", "nbc-python", {"transport": "tcp"}),
    ("nbc-python (tcp, host network)", "nbc-python", {"transport": "tcp", "network": "host"}),
    ("nbc-python (warm pool)", "nbc-python", {"pool_size": 1}),
    # An ipython_kernel_config.py is code: the member then waits with its kernel not started.
    ("nbc-python (warm pool, .py config)", "nbc-python", {"pool_size": 1, "py_config": True}),
]


def swarm_cases(node: str) -> list[tuple[str, str, dict[str, Any]]]:
    """Kernels on Swarm node ``node`` (placed by its ``nbc.node`` label, as ensure-swarm.sh
    sets it), with and without Curve, and a plain Docker kernel with Curve."""
    on = {"runtime": "swarm", "placement": [f"node.labels.nbc.node=={node}"]}
    on["mount_workspace"] = False  # the bench's temporary folder is on this host only
    return [
        (
            "nbc-python (tcp 127.0.0.1, Curve)",
            "nbc-python",
            {"transport": "tcp", "encryption": "curve"},
        ),
        ("swarm worker (tcp, Curve)", "nbc-python", on),
        ("swarm worker (tcp, no Curve)", "nbc-python", {**on, "encryption": "none"}),
    ]


def start(kernel: str, config: dict[str, Any], cwd: str) -> tuple[KernelManager, Any, float, float]:
    """Start ``kernel``; return it, its client, seconds until it answers and until ready."""
    from nbcontainers.kernels.pool import kernel_pool

    config = dict(config)
    if "pool_size" in config:
        config["workspace_root"] = cwd
    if config.pop("py_config", False):
        profile = Path(cwd, "ipython", "profile_default")
        profile.mkdir(parents=True, exist_ok=True)
        (profile / "ipython_kernel_config.py").write_text("c.IPKernelApp.log_level = 30\n")
        config["env"] = {"IPYTHONDIR": str(profile.parent)}
    km = KernelManager(kernel_name=kernel)
    if config:
        km.kernel_spec.metadata["kernel_provisioner"]["config"].update(config)
    kernel_pool().wait_ready(1, timeout=60)  # no refill while this start is timed
    t0 = time.perf_counter()
    km.start_kernel(cwd=cwd)
    kc = km.client()
    kc.start_channels()
    while True:
        msg_id = kc.kernel_info()
        try:
            reply = kc.get_shell_msg(timeout=1)
        except Empty:
            continue
        if reply["parent_header"].get("msg_id") == msg_id:
            break
    answers = time.perf_counter() - t0
    kc.wait_for_ready(timeout=60)
    return km, kc, answers, time.perf_counter() - t0


def idle_memory() -> int | None:
    """Memory one idle pooled kernel container uses, as the engine counts it."""
    from nbcontainers.kernels.pooled import POOL_ROLE
    from nbcontainers.labels import ROLE
    from nbcontainers.runtimes import get_runtime

    runtime = get_runtime()
    pooled = [s for s in runtime.list({ROLE: POOL_ROLE}) if s.running]
    return runtime.stats(pooled[0].id).memory_used if pooled else None


def stop(km: KernelManager, kc: BlockingKernelClient) -> None:
    kc.stop_channels()
    km.shutdown_kernel(now=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--starts", type=int, default=7)
    parser.add_argument("--execs", type=int, default=400)
    parser.add_argument("--swarm", metavar="NODE", help="also run kernels on this Swarm node")
    args = parser.parse_args()
    from nbcontainers.kernels.pool import kernel_pool

    cases = CASES + (swarm_cases(args.swarm) if args.swarm else [])
    ready: dict[str, list[float]] = {label: [] for label, _, _ in cases}
    answers: dict[str, list[float]] = {label: [] for label, _, _ in cases}
    trips: dict[str, list[float]] = {label: [] for label, _, _ in cases}
    with tempfile.TemporaryDirectory() as cwd:
        for _label, kernel, config in cases:  # warm-up start, not counted (page cache, holder)
            stop(*start(kernel, config, cwd)[:2])
        for _ in range(args.starts):
            for label, kernel, config in cases:
                km, kc, answered, seconds = start(kernel, config, cwd)
                answers[label].append(answered)
                ready[label].append(seconds)
                stop(km, kc)
        kernels = {label: start(kernel, config, cwd)[:2] for label, kernel, config in cases}
        kernel_pool().wait_ready(1, timeout=60)  # the refill is done before round trips
        for _, kc in kernels.values():
            for _ in range(30):
                kc.execute_interactive("pass", timeout=10)
        batch = 50
        for _ in range(max(1, args.execs // batch)):
            for label, (_, kc) in kernels.items():
                for _ in range(batch):
                    t0 = time.perf_counter()
                    kc.execute_interactive("pass", timeout=10)
                    trips[label].append(time.perf_counter() - t0)
        for km, kc in kernels.values():
            stop(km, kc)
        idle = idle_memory()
        kernel_pool().drain()

    from nbcontainers.kernels.pool import kernel_pool
    from nbcontainers.runtimes import choose_engine, get_runtime

    facts = get_runtime().ping()
    print(
        f"engine: {facts.name} {facts.version} at {facts.endpoint}"
        f"{' (rootless)' if facts.rootless else ''}, picked: {choose_engine()[2]}"
    )
    base_answer = statistics.median(answers["local ipykernel"])
    base_ready = statistics.median(ready["local ipykernel"])
    base_trip = statistics.median(trips["local ipykernel"])
    print(
        f"answers/ready: median of {args.starts} starts; round trip: median of "
        f"{len(trips['local ipykernel'])} executes of 'pass'"
    )
    print(
        f"{'case':<36} {'answers s (min-max)':>20} {'x local':>8} {'ready s':>8} {'x local':>8}"
        f" {'trip ms':>8} {'p90 ms':>7} {'x local':>8}"
    )
    for label, _, _ in cases:
        a, r = statistics.median(answers[label]), statistics.median(ready[label])
        t = statistics.median(trips[label])
        p90 = statistics.quantiles(trips[label], n=10)[-1]
        print(
            f"{label:<36} {a:>6.3f} ({min(answers[label]):.2f}-{max(answers[label]):.2f})"
            f" {a / base_answer:>8.2f} {r:>8.3f} {r / base_ready:>8.2f}"
            f" {t * 1e3:>8.2f} {p90 * 1e3:>7.2f} {t / base_trip:>8.2f}"
        )
    if idle is not None:
        print(f"an idle pooled kernel container uses {idle / 2**20:.0f} MiB (engine stats)")


if __name__ == "__main__":
    main()
