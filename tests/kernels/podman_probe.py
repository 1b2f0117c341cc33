"""Run as a non-root user by test_kernels_podman.py: start an nbc-python kernel the way that
user's Jupyter server would (runtime "auto" -> the user's own rootless Podman), drive it, and
print what was seen as JSON. Not collected by pytest (no test_ prefix).

``magics`` mode: a notebook's local kernel, as that user, runs ``%container use python`` and
then push/pull, ``%container snapshot --build`` and ``%export-serving`` of a tiny model, all on
the user's rootless Podman; each cell's output goes into the JSON.

For tests/security/test_heal_podman.py: ``leave`` starts a kernel and exits without shutting it
down (the server is gone, its kernel runs on); ``start`` starts one, runs a cell, shuts it down
and reports an error instead of raising; ``idle`` does that, waits for the user's engine to exit
on its idle timeout (``NBCONTAINERS_PODMAN_IDLE``), then starts another in the same process."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from jupyter_client.manager import KernelManager


def run(kc: Any, code: str, timeout: float = 60) -> tuple[str, dict[str, Any]]:
    out: list[str] = []

    def hook(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])

    reply = kc.execute_interactive(code, output_hook=hook, timeout=timeout)
    return "".join(out), reply["content"]


def main(work: str) -> None:
    seen: dict[str, Any] = {}
    km = KernelManager(kernel_name="nbc-python")
    t0 = time.perf_counter()
    km.start_kernel(cwd=work)
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=120)
        seen["ready_s"] = time.perf_counter() - t0
        seen["engine"] = km.provisioner._engine_facts().name  # type: ignore[union-attr]
        seen["containers"] = [km.provisioner.container_id]  # type: ignore[union-attr]
        seen["output"], _ = run(
            kc,
            "import os; open('from-kernel.txt', 'w').write('hi')\n"
            "print(os.getuid(), os.getcwd(), os.environ.get('NBCONTAINERS_IMAGE'))",
        )
        kc.execute("import time; time.sleep(600)")
        time.sleep(1.0)
        t1 = time.perf_counter()
        km.interrupt_kernel()
        while True:
            msg = kc.get_shell_msg(timeout=30)
            if msg["msg_type"] == "execute_reply":
                seen["interrupted"] = msg["content"].get("ename")
                break
        seen["interrupt_s"] = time.perf_counter() - t1
        km.restart_kernel()
        kc.wait_for_ready(timeout=120)
        seen["containers"].append(km.provisioner.container_id)  # type: ignore[union-attr]
        # A fresh kernel in a fresh container, same workspace: the file is still there.
        seen["after_restart"], _ = run(kc, "import os; print(os.path.exists('from-kernel.txt'))")
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)
    print(json.dumps(seen))


MAGIC_CELLS = {  # a line magic in a cell of its own: the cell's other lines would run locally
    "load": "%load_ext nbcontainers\nlocal_rows = [[1.0, 2.0], [3.0, 4.0]]",
    "use": "%container use python",
    "push": "%container push local_rows",
    "define": "import numpy as np\nX = np.array(local_rows)\n"
    "def double(x):\n    return x * 2\nmade_there = double(X).tolist()\nprint(X.sum())",
    "pull": "%container pull made_there",
    "local": "%container local",
    "pulled": "print(made_there)",
    "use_again": "%container use python",
    "snapshot": "%container snapshot env --build",
    "export": "%export-serving double --example X --dir serving-double",
    "stop": "%container stop python",
}


def magics(work: str) -> None:
    seen: dict[str, Any] = {}
    km = KernelManager(kernel_name="python3")
    km.start_kernel(cwd=work)
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        for name, code in MAGIC_CELLS.items():
            t0 = time.perf_counter()
            out, reply = run(kc, code, timeout=900)
            seen[name] = {
                "out": out[-3000:],
                "status": reply["status"],
                "error": f"{reply.get('ename')}: {reply.get('evalue')}"[-2000:],
                "s": round(time.perf_counter() - t0, 1),
            }
            if reply["status"] != "ok":
                run(kc, "%container stop python", timeout=60)  # leave no kernel behind
                break
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)  # its exit removes what its magics started
    print(json.dumps(seen))


def leave(work: str) -> None:
    km = KernelManager(kernel_name="nbc-python")
    km.start_kernel(cwd=work)
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=120)
    kc.stop_channels()
    print(json.dumps({"container": km.provisioner.container_id}), flush=True)  # type: ignore[union-attr]
    os._exit(0)  # no shutdown, no exit hooks: the server is gone, its kernel runs on


def _start_once(work: str) -> dict[str, Any]:
    km = KernelManager(kernel_name="nbc-python")
    t0 = time.perf_counter()
    try:
        km.start_kernel(cwd=work)
    except Exception as exc:  # the test asserts on what a user would have seen
        return {"error": f"{type(exc).__name__}: {exc}"}
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=120)
        out, reply = run(kc, "print(6 * 7)")
        return {"out": out, "status": reply["status"], "ready_s": time.perf_counter() - t0}
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)


def engine_pids() -> list[int]:
    """This user's ``podman system service`` processes."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and entry.stat().st_uid == os.getuid():
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                if b"system" in argv and b"service" in argv:
                    found.append(int(entry.name))
        except OSError:
            pass
    return found


def idle(work: str) -> None:
    seen: dict[str, Any] = {"first": _start_once(work), "engine": engine_pids()}
    t0 = time.monotonic()
    while engine_pids() and time.monotonic() - t0 < 120:
        time.sleep(0.2)
    seen["gone_after_s"] = round(time.monotonic() - t0, 1) if not engine_pids() else None
    seen["again"] = _start_once(work)  # same process, same runtime object as the first start
    seen["engine_again"] = engine_pids()
    print(json.dumps(seen))


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "magics":
        magics(sys.argv[2])
    elif mode == "leave":
        leave(sys.argv[2])
    elif mode == "start":
        print(json.dumps(_start_once(sys.argv[2])))
    elif mode == "idle":
        idle(sys.argv[2])
    else:
        main(sys.argv[1])
