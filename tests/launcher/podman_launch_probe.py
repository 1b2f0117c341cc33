"""Run as the Podman test user by test_launcher_podman.py: the nbc-python kernelspec's plain
argv (jupyter_client's LocalProvisioner, what VS Code does over Remote-SSH to a shared GPU
server) on that user's rootless Podman: who and where the kernel is, an interrupted cell, a
restart, then SIGKILL of the launcher's process group; print what was seen as JSON. Not
collected by pytest (no test_ prefix)."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

from plain import plain_kernel_manager

from nbcontainers.labels import KERNEL_ID
from nbcontainers.launch.client import send, service_path
from nbcontainers.runtimes.podman.runtime import PodmanRuntime

WHERE = (
    "import getpass, json, os, socket\n"
    "print(json.dumps([socket.gethostname(), os.getcwd(), os.getuid(), getpass.getuser(),"
    " os.environ['NBCONTAINERS_IMAGE']]))"
)


def run(kc: Any, code: str, timeout: float = 120) -> dict[str, Any]:
    out: list[str] = []

    def hook(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])

    reply = kc.execute_interactive(code, output_hook=hook, timeout=timeout)["content"]
    return {"status": reply["status"], "ename": reply.get("ename"), "out": "".join(out)}


def main(work: str) -> None:
    runtime = PodmanRuntime()
    seen: dict[str, Any] = {"host": socket.gethostname()}
    km = plain_kernel_manager(Path(work) / "kernels")
    km.start_kernel(cwd=work)
    kernel_id = Path(km.connection_file).stem.removeprefix("kernel-")
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=120)
        seen["provisioner"] = type(km.provisioner).__name__
        seen["where"] = json.loads(run(kc, WHERE)["out"].strip().splitlines()[-1])
        seen["containers"] = len(runtime.list({KERNEL_ID: kernel_id}))
        kc.execute("import time\nfor _ in range(60): time.sleep(1)")
        time.sleep(2)
        t0 = time.monotonic()
        km.interrupt_kernel()
        reply = kc.get_shell_msg(timeout=30)
        while reply["msg_type"] != "execute_reply":
            reply = kc.get_shell_msg(timeout=30)
        seen["interrupt"] = [reply["content"].get("ename"), round(time.monotonic() - t0, 2)]
        before = {s.id for s in runtime.list({KERNEL_ID: kernel_id})}
        run(kc, "x = 1")
        km.restart_kernel()
        kc.wait_for_ready(timeout=120)
        # The old container goes when its launcher's connection closes: a moment, not at once.
        deadline = time.monotonic() + 15
        after = {s.id for s in runtime.list({KERNEL_ID: kernel_id})}
        while before & after and time.monotonic() < deadline:
            time.sleep(0.2)
            after = {s.id for s in runtime.list({KERNEL_ID: kernel_id})}
        seen["restart"] = [run(kc, "x")["ename"], len(after), bool(before & after)]
        os.killpg(km.provisioner.process.pid, signal.SIGKILL)  # type: ignore[union-attr]
        t0 = time.monotonic()
        while runtime.list({KERNEL_ID: kernel_id}) and time.monotonic() - t0 < 60:
            time.sleep(0.2)
        seen["after_sigkill"] = [
            len(runtime.list({KERNEL_ID: kernel_id})),
            round(time.monotonic() - t0, 2),
        ]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
        try:  # the start service leaves now that it runs no kernel
            with socket.socket(socket.AF_UNIX) as sock:
                sock.connect(str(service_path(os.environ)))
                send(sock, {"op": "quit"})
        except OSError:
            pass
    print(json.dumps(seen))


if __name__ == "__main__":
    main(sys.argv[1])
