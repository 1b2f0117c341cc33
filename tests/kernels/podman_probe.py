"""Run as a non-root user by test_kernels_podman.py: start an nbc-python kernel the way that
user's Jupyter server would (runtime "auto" -> the user's own rootless Podman), drive it, and
print what was seen as JSON. Not collected by pytest (no test_ prefix).

``magics`` mode: a notebook's local kernel, as that user, runs ``%container use python`` and
then push/pull, ``%container snapshot --build`` and ``%export-serving`` of a tiny model, all on
the user's rootless Podman; each cell's output goes into the JSON."""

from __future__ import annotations

import json
import sys
import time
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


if __name__ == "__main__":
    if sys.argv[1] == "magics":
        magics(sys.argv[2])
    else:
        main(sys.argv[1])
