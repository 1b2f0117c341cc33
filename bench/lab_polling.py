"""What the JupyterLab extension's polling costs: 10 idle `nbc-python` kernels on a real
Jupyter Server with the ``nbcontainers.lab`` extension, and the CPU time of the server
process, dockerd and containerd over three kinds of windows in the same run:

- quiet: nobody asks /api/nbcontainers/kernels (the baseline);
- one client asking every 2 s, as the front end does while its page is visible;
- three clients (three tabs, say) asking every 2 s each.

The windows take turns, ``--rounds`` of each kind. Printed per process and together, the
median of each kind: % of one CPU, what polling adds over the quiet windows, and the ratio
polled / quiet. Every kernel is shut down through the server, and
any container of theirs still on the engine afterwards is removed and reported.

Usage (the python image must be built; hold the Docker lock, as the tests do):
    flock /tmp/nbc-dock.lock .venv/bin/python bench/lab_polling.py [--window 20] [--rounds 3]
Against other code (an earlier commit's checkout, say): PYTHONPATH=<that checkout> in front.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
TICK = os.sysconf("SC_CLK_TCK")
POLL_EVERY = 2.0  # the front end's interval
ENGINE = {"dockerd": "/usr/sbin/dockerd", "containerd": "containerd --config"}


def _cpu(pid: int) -> float:
    """User + system CPU seconds of ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def _pid(starts: str) -> int | None:
    """The process whose command line starts with ``starts``."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if argv.startswith(starts):
                return int(entry.name)
    return None


def _call(base: str, token: str, path: str, method: str = "GET", body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        base + path,
        data=data,
        method=method,
        headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        text = response.read()
    return json.loads(text) if text else None


def _window(pids: dict[str, int], seconds: float, poll: tuple[str, str], clients: int) -> Any:
    """% of one CPU per process over ``seconds`` while ``clients`` poll (0: none)."""
    stop = threading.Event()

    def client(offset: float) -> None:
        stop.wait(offset)
        while not stop.is_set():
            _call(*poll, "/api/nbcontainers/kernels")
            stop.wait(POLL_EVERY)

    threads = [
        threading.Thread(target=client, args=(i * POLL_EVERY / max(clients, 1),), daemon=True)
        for i in range(clients)
    ]
    before = {k: _cpu(p) for k, p in pids.items()}
    start = time.monotonic()
    for t in threads:
        t.start()
    time.sleep(seconds)
    spent = time.monotonic() - start
    after = {k: _cpu(p) for k, p in pids.items()}
    stop.set()
    for t in threads:
        t.join()
    return {k: 100 * (after[k] - before[k]) / spent for k in pids}


def _server(folder: Path, data: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = secrets.token_hex(16)
    env = {**os.environ, "JUPYTER_PATH": str(data), "JUPYTER_CONFIG_DIR": str(folder / "cfg")}
    proc = subprocess.Popen(
        [str(BIN / "jupyter"), "server", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={folder}",
         "--ServerApp.jpserver_extensions=nbcontainers.lab=True",
         *(["--allow-root"] if os.getuid() == 0 else [])],
        stdout=subprocess.DEVNULL, stderr=(folder / "server.log").open("wb"), env=env,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            _call(base, token, "/api/status")
            return proc, base, token
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("the Jupyter server did not answer:\n" + (folder / "server.log").read_text())


def _leftovers(ids: list[str]) -> list[str]:
    """Containers of these kernels still on the engine, removed here."""
    from nbcontainers.labels import KERNEL_ID
    from nbcontainers.runtimes.docker.runtime import DockerRuntime

    runtime = DockerRuntime()
    left = [s.id for s in runtime.list({KERNEL_ID: None}) if s.labels.get(KERNEL_ID) in ids]
    for container_id in left:
        runtime.remove(container_id)
    return left


def _median(windows: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(w[k] for w in windows) for k in windows[0]}


def _ratio(polled: float, quiet: float) -> str:
    return f"x{polled / quiet:.2f}" if quiet > 0 else "x?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--window", type=float, default=20.0, help="seconds per window")
    parser.add_argument("--rounds", type=int, default=3, help="windows of each kind")
    parser.add_argument("--kernels", type=int, default=10)
    args = parser.parse_args()

    from nbcontainers.catalog.entries import load_catalog
    from nbcontainers.catalog.kernelspecs import install_kernelspecs

    pids = {name: _pid(starts) for name, starts in ENGINE.items()}
    ids: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        install_kernelspecs(load_catalog(include_user=False), prefix=str(folder / "prefix"))
        proc, base, token = _server(folder, folder / "prefix" / "share" / "jupyter")
        try:
            for _ in range(args.kernels):
                ids.append(_call(base, token, "/api/kernels", "POST", {"name": "nbc-python"})["id"])
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                listed = _call(base, token, "/api/nbcontainers/kernels")
                if sum(r["state"] == "running" for r in listed) >= args.kernels:
                    break
                time.sleep(1)
            else:
                raise SystemExit(f"{args.kernels} kernels did not come up")
            watched = {"server": proc.pid, **{k: p for k, p in pids.items() if p}}
            time.sleep(15)  # the kernels and the first samples settle
            poll = (base, token)
            # Interleaved rounds, medians: other work on a shared machine (an image build,
            # another user's containers) lands in one window, not in every window of a kind.
            rounds: dict[int, list[dict[str, float]]] = {0: [], 1: [], 3: []}
            for _ in range(args.rounds):
                for clients, got in rounds.items():
                    got.append(_window(watched, args.window, poll, clients))
            quiet, one, three = (_median(rounds[n]) for n in (0, 1, 3))
            t0 = time.monotonic()
            _call(base, token, "/api/nbcontainers/kernels")
            one_list = time.monotonic() - t0
        finally:
            for kernel_id in ids:
                try:
                    _call(base, token, f"/api/kernels/{kernel_id}", "DELETE")
                except (urllib.error.URLError, OSError) as exc:
                    print(f"  shutting down {kernel_id}: {exc}")
            proc.terminate()
            proc.wait(timeout=60)
            left = _leftovers(ids)
    watched_names = list(quiet)
    total = {w: sum(v.values()) for w, v in (("quiet", quiet), ("one", one), ("three", three))}
    print(
        f"{args.kernels} idle nbc-python kernels, {args.rounds} rounds of {args.window:.0f} s "
        f"windows, {os.cpu_count()} CPUs; % of one CPU, medians"
    )
    for name in [*watched_names, "all"]:
        q = total["quiet"] if name == "all" else quiet[name]
        o = total["one"] if name == "all" else one[name]
        t = total["three"] if name == "all" else three[name]
        print(
            f"  {name:10} quiet {q:5.2f} | 1 client {o:5.2f} (+{o - q:.2f}, {_ratio(o, q)})"
            f" | 3 clients {t:5.2f} (+{t - q:.2f}, {_ratio(t, q)})"
        )
    added = total["one"] - total["quiet"]
    print(
        f"  polling by one client adds {added:.2f} % of one CPU "
        f"({added / (os.cpu_count() or 1):.2f} % of this machine); one list took {one_list:.3f} s"
    )
    print(f"  containers left after the run: {len(left)} (removed: {left})")


if __name__ == "__main__":
    main()
