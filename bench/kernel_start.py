"""Kernel-ready time and execute round trip: local ipykernel vs nbc-python (image cached).

Three readiness figures per start, from the moment start_kernel() is called: "answers",
when the kernel first replies to kernel_info; "ready", when the client has also seen that
request's status on IOPub (both channels work: what Jupyter Server's nudge waits for before
a frontend's kernel is ready; kernel_info is sent again until it has); and "wait_for_ready",
when jupyter_client's wait_for_ready() returns, which adds its IOPub flush, a fixed 0.2 s wait
for silence, to every kernel alike.
The warm-pool cases take a pooled container (c.ContainerProvisioner.pool_size), whose kernel
was started up to the user's code before the start (or, with a Python config file, not at
all); each start of every case waits until the pools are full again first, so no refill runs
while one is timed.

Cases are interleaved (one start of each case per round, then round trips in alternating
batches), and every figure is printed as a ratio against the local kernel measured in the
same run, because these machines are shared and noisy.

Usage: python bench/kernel_start.py [--starts 7] [--execs 400] [--swarm NODE] [--cases a,b]

The launcher cases start the kernelspec's plain argv (``python -m nbcontainers.launch``) with
jupyter_client's LocalProvisioner, as frontends without provisioners do; compare them with the
provisioner's default (ipc, shared netns: the same container) and warm-pool cases. The
warm-up start before the timed ones also starts the launcher's start service; a first start
with no service running (about 0.6 s more here) is not among the timed ones.

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
import json
import os
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
    # The kernelspec's argv run by jupyter_client's LocalProvisioner, as VS Code, Zed and
    # nteract run it: python -m nbcontainers.launch, tcp ports on 127.0.0.1.
    ("nbc-python launcher (plain argv)", "nbc-python", {"plain": True}),
    # The same, with c.ContainerProvisioner.pool_size = 1 in a jupyter_server_config.json:
    # the launcher's start service keeps the pool, as a server does.
    ("nbc-python launcher (warm pool)", "nbc-python", {"plain": True, "pool_size": 1}),
]
# A copy of each nbc-* kernelspec without its provisioner metadata (set up by main()).
PLAIN_SPECS: list[str] = []


def plain_specs(folder: Path) -> None:
    """Copy the installed nbc-* kernelspecs into ``folder`` without provisioner metadata."""
    import shutil

    from jupyter_client.kernelspec import KernelSpecManager

    for name, path in KernelSpecManager().find_kernel_specs().items():
        if name.startswith("nbc-"):
            shutil.copytree(path, folder / name)
            spec = json.loads((folder / name / "kernel.json").read_text())
            spec["metadata"].pop("kernel_provisioner", None)
            (folder / name / "kernel.json").write_text(json.dumps(spec))
    PLAIN_SPECS.append(str(folder))


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


def start(
    kernel: str, config: dict[str, Any], cwd: str
) -> tuple[KernelManager, Any, tuple[float, float, float]]:
    """Start ``kernel``; return it, its client, and seconds until it answers, is ready and
    wait_for_ready() returns."""
    from nbcontainers.kernels.pool import kernel_pool

    config = dict(config)
    if "pool_size" in config:
        config["workspace_root"] = cwd
    if config.pop("py_config", False):
        profile = Path(cwd, "ipython", "profile_default")
        profile.mkdir(parents=True, exist_ok=True)
        (profile / "ipython_kernel_config.py").write_text("c.IPKernelApp.log_level = 30\n")
        config["env"] = {"IPYTHONDIR": str(profile.parent)}
    env = dict(os.environ)
    if config.pop("plain", False):
        from jupyter_client.kernelspec import KernelSpecManager

        specs = KernelSpecManager(kernel_dirs=PLAIN_SPECS)
        km = KernelManager(kernel_name=kernel, kernel_spec_manager=specs)
        if config:  # the launcher reads them from the user's Jupyter config files
            folder = Path(cwd, "launcher-config")
            folder.mkdir(exist_ok=True)
            # No memory cap: a member is handed out as soon as it waits (nothing to measure).
            section = {**config, "pool_max_memory": ""}
            (folder / "jupyter_server_config.json").write_text(
                json.dumps({"ContainerProvisioner": section})
            )
            env["JUPYTER_CONFIG_DIR"] = str(folder)
            config = {}
            launcher_pool_ready()
    else:
        km = KernelManager(kernel_name=kernel)
    if config:
        km.kernel_spec.metadata["kernel_provisioner"]["config"].update(config)
    kernel_pool().wait_ready(1, timeout=60)  # no refill while this start is timed
    t0 = time.perf_counter()
    km.start_kernel(cwd=cwd, env=env)
    kc = km.client()
    kc.start_channels()
    answers = ready = 0.0
    sent: set[str] = set()
    while not ready:
        sent.add(kc.kernel_info())
        try:
            while not answers:
                if kc.get_shell_msg(timeout=1)["parent_header"].get("msg_id") in sent:
                    answers = time.perf_counter() - t0
            while not ready:  # a late IOPub subscriber misses some: ask again after 0.1 s
                if kc.get_iopub_msg(timeout=0.1)["parent_header"].get("msg_id") in sent:
                    ready = time.perf_counter() - t0
        except Empty:
            continue
    kc.wait_for_ready(timeout=60)
    return km, kc, (answers, ready, time.perf_counter() - t0)


def _launcher_members() -> list[Any]:
    """Pooled containers kept by launchers' start services (not by this process's pool)."""
    from nbcontainers.kernels.pooled import POOL_ROLE
    from nbcontainers.labels import ROLE, SERVER_PID
    from nbcontainers.runtimes import get_runtime

    return [
        s
        for s in get_runtime().list({ROLE: POOL_ROLE})
        if s.running and s.labels.get(SERVER_PID) != str(os.getpid())
    ]


def launcher_pool_ready(timeout: float = 60) -> None:
    """Wait until a launcher's start service has a pooled member waiting (after the first,
    cold start of the case, which teaches it the pool)."""
    from nbcontainers.kernels.pooled import reader_waiting
    from nbcontainers.labels import PRIVATE_DIR

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for member in _launcher_members():
            if reader_waiting(Path(member.labels[PRIVATE_DIR], "s", "wait")):
                time.sleep(0.1)  # the pool's own probe runs every 20 ms
                return
        time.sleep(0.05)


def stop_launcher_pools() -> None:
    """End the start services that keep pools (their idle members go with them)."""
    import signal

    from nbcontainers.labels import SERVER_PID

    for pid in {int(m.labels[SERVER_PID]) for m in _launcher_members()}:
        os.kill(pid, signal.SIGTERM)


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
    parser.add_argument(
        "--cases",
        default="",
        help="only the cases whose label holds one of these comma-separated words "
        "(the local kernel always runs: it is the yardstick)",
    )
    args = parser.parse_args()
    from nbcontainers.kernels.pool import kernel_pool

    cases = CASES + (swarm_cases(args.swarm) if args.swarm else [])
    if args.cases:
        words = args.cases.split(",")
        cases = [c for c in cases if c[0] == "local ipykernel" or any(w in c[0] for w in words)]
    plain_dir = tempfile.TemporaryDirectory()
    plain_specs(Path(plain_dir.name))
    answers: dict[str, list[float]] = {label: [] for label, _, _ in cases}
    ready: dict[str, list[float]] = {label: [] for label, _, _ in cases}
    waited: dict[str, list[float]] = {label: [] for label, _, _ in cases}
    trips: dict[str, list[float]] = {label: [] for label, _, _ in cases}
    with tempfile.TemporaryDirectory() as cwd:
        for _label, kernel, config in cases:  # warm-up start, not counted (page cache, holder)
            stop(*start(kernel, config, cwd)[:2])
        for _ in range(args.starts):
            for label, kernel, config in cases:
                km, kc, (answered, seconds, returned) = start(kernel, config, cwd)
                answers[label].append(answered)
                ready[label].append(seconds)
                waited[label].append(returned)
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
        stop_launcher_pools()

    from nbcontainers.kernels.pool import kernel_pool
    from nbcontainers.runtimes import choose_engine, get_runtime

    facts = get_runtime().ping()
    print(
        f"engine: {facts.name} {facts.version} at {facts.endpoint}"
        f"{' (rootless)' if facts.rootless else ''}, picked: {choose_engine()[2]}"
    )
    base = {
        name: statistics.median(figures["local ipykernel"])
        for name, figures in (("a", answers), ("r", ready), ("w", waited), ("t", trips))
    }
    print(
        f"answers/ready/wait_for_ready: median of {args.starts} starts; round trip: median of "
        f"{len(trips['local ipykernel'])} executes of 'pass'"
    )
    print(
        f"{'case':<36} {'answers s':>9} {'x local':>7} {'ready s (min-max)':>18} {'x local':>7}"
        f" {'wait_for_ready s':>16} {'x local':>7} {'trip ms':>7} {'p90 ms':>6} {'x local':>7}"
    )
    for label, _, _ in cases:
        a, r = statistics.median(answers[label]), statistics.median(ready[label])
        w, t = statistics.median(waited[label]), statistics.median(trips[label])
        p90 = statistics.quantiles(trips[label], n=10)[-1]
        print(
            f"{label:<36} {a:>9.3f} {a / base['a']:>7.2f}"
            f" {r:>6.3f} ({min(ready[label]):.2f}-{max(ready[label]):.2f}) {r / base['r']:>7.2f}"
            f" {w:>16.3f} {w / base['w']:>7.2f}"
            f" {t * 1e3:>7.2f} {p90 * 1e3:>6.2f} {t / base['t']:>7.2f}"
        )
    if idle is not None:
        print(f"an idle pooled kernel container uses {idle / 2**20:.0f} MiB (engine stats)")


if __name__ == "__main__":
    main()
