"""What the extension's polling costs: 10 idle container kernels on a real Jupyter Server, CPU
time of the server process and of the Docker engine over a quiet window, then over the same
window with one client polling /api/nbcontainers/kernels every 2 s (as the front end does).

Run by hand (not collected by pytest), under the Docker lock:
    flock /tmp/nbc-dock.lock .venv/bin/python -m tests.lab.bench_polling
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import pytest

from .labserver import api, kernels, lab_server

KERNELS = 10
WINDOW = 40.0
TICK = os.sysconf("SC_CLK_TCK")


def _cpu(pid: int) -> float:
    """User + system CPU seconds of ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def _pid(match: str) -> int:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if match in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode():
                    return int(entry.name)
            except OSError:
                continue
    raise LookupError(match)


def _window(pids: dict[str, int], poll: tuple[str, str] | None) -> dict[str, float]:
    before = {k: _cpu(p) for k, p in pids.items()}
    start = time.monotonic()
    while time.monotonic() - start < WINDOW:
        if poll:
            kernels(*poll)
        time.sleep(2.0)
    spent = time.monotonic() - start
    return {k: 100 * (_cpu(p) - before[k]) / spent for k, p in pids.items()}


def main() -> None:
    from nbcontainers.catalog.entries import load_catalog
    from nbcontainers.catalog.kernelspecs import install_kernelspecs

    with tempfile.TemporaryDirectory() as tmp:
        prefix = Path(tmp) / "prefix"
        install_kernelspecs(load_catalog(include_user=False), prefix=str(prefix))
        data = prefix / "share" / "jupyter"
        os.environ["JUPYTER_PATH"] = str(data)
        mp = pytest.MonkeyPatch()
        work = Path(tmp) / "server"
        work.mkdir()
        with lab_server(work, data, mp, frontend=False) as (base, token, _root):
            ids = [
                api(base, token, "/api/kernels", "POST", {"name": "nbc-python"})[1]["id"]
                for _ in range(KERNELS)
            ]
            try:
                while sum(1 for r in kernels(base, token) if r["state"] == "running") < KERNELS:
                    time.sleep(1)
                port = base.rsplit(":", 1)[1]
                pids = {"server": _pid(f"--port={port}"), "dockerd": _pid("dockerd")}
                t0 = time.monotonic()
                kernels(base, token)
                first = time.monotonic() - t0
                time.sleep(10)  # the kernels settle after their start
                quiet = _window(pids, None)
                polled = _window(pids, (base, token))
                t0 = time.monotonic()
                kernels(base, token)
                warm = time.monotonic() - t0
            finally:
                for kid in ids:
                    api(base, token, f"/api/kernels/{kid}", "DELETE")
        mp.undo()
    print(f"{KERNELS} idle kernels, {WINDOW:.0f} s windows, {os.cpu_count()} CPUs")
    for name in quiet:
        print(
            f"  {name}: {quiet[name]:.2f} % of one CPU quiet, {polled[name]:.2f} % polled "
            f"every 2 s (+{polled[name] - quiet[name]:.2f})"
        )
    print(f"  one list: {first:.2f} s when asked after a pause, {warm:.2f} s while polled")


if __name__ == "__main__":
    main()
