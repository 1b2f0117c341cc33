"""Run as a non-root user by test_kernels_podman.py: start an nbc-python kernel the way that
user's Jupyter server would (runtime "auto" -> the user's own rootless Podman), drive it, and
print what was seen as JSON. Not collected by pytest (no test_ prefix)."""

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


if __name__ == "__main__":
    main(sys.argv[1])
