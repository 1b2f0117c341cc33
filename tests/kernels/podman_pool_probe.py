"""Run as a non-root user by test_pool_podman.py: the warm pool on that user's own rootless
Podman (runtime "auto"), the way that user's Jupyter server would use it. A cold kernel, the
pool filling behind it (its member's sockets bound early), a second kernel taken from the
pool, what both kernels see of themselves and how the engine made both containers, a restart
from the pool; printed as JSON. The pooled containers still idle at the end are removed by the
pool's exit hook, as at a server's exit. Not collected by pytest (no test_ prefix).

Usage: python podman_pool_probe.py WORKSPACE (a folder the user owns)
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from jupyter_client.manager import KernelManager
from pool_alike import SEEN, ipython_dir, made, seen_in  # this folder: run as a script

from nbcontainers.kernels.pool import kernel_pool
from nbcontainers.kernels.pooled import POOL_ROLE
from nbcontainers.labels import ROLE


def execute(km: KernelManager, code: str) -> str:
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        out: list[str] = []

        def hook(msg: dict[str, Any]) -> None:
            if msg["msg_type"] == "stream":
                out.append(msg["content"]["text"])
            elif msg["msg_type"] == "error":
                out.append("\n".join(msg["content"]["traceback"]))

        reply = kc.execute_interactive(code, output_hook=hook, timeout=60)
        if reply["content"]["status"] != "ok":
            raise RuntimeError("".join(out))
        return "".join(out)
    finally:
        kc.stop_channels()


def seen_by(km: KernelManager) -> dict[str, Any]:
    return seen_in(execute(km, SEEN))


def made_by(km: KernelManager) -> dict[str, Any]:
    return made(km.provisioner.runtime.api.inspect_container(km.provisioner.container_id))  # type: ignore[union-attr]


def start(notebook: Path, session: str, config: dict[str, Any]) -> KernelManager:
    km = KernelManager(kernel_name="nbc-python")
    km.kernel_spec.metadata["kernel_provisioner"]["config"].update(config)  # type: ignore[union-attr]
    km.start_kernel(cwd=str(notebook), env={**os.environ, "JPY_SESSION_NAME": session})
    return km


def pooled_left(runtime: Any) -> list[str]:
    return [s.name for s in runtime.list({ROLE: POOL_ROLE})]


def main(work: Path) -> None:
    notebook = work / "project" / "nb"
    notebook.mkdir(parents=True)
    (notebook / "data.csv").write_text("a,b\n")
    env = {"IPYTHONDIR": ipython_dir(work)}
    config = {"pool_size": 1, "workspace_root": str(work), "env": env}
    pool = kernel_pool()
    seen: dict[str, Any] = {}
    kms: list[KernelManager] = []
    try:
        cold = start(notebook, "project/nb/a.ipynb", config)
        kms.append(cold)
        runtime = cold.provisioner.runtime  # type: ignore[union-attr]
        seen["engine"] = cold.provisioner._engine_facts().name  # type: ignore[union-attr]
        seen["cold_pooled"] = cold.provisioner._pooled is not None  # type: ignore[union-attr]
        seen["filled"] = pool.wait_ready(1, timeout=60)
        [slot] = pool._slots.values()
        sockets = slot.ready[0].private.sockets if slot.ready else None
        seen["privates"] = [str(m.private.path) for m in slot.ready]
        seen["bound_early"] = sorted(
            p.name for p in (sockets.iterdir() if sockets else ()) if p.is_socket()
        )
        seen["pooled_running"] = pooled_left(runtime)
        warm = start(notebook, "project/nb/b.ipynb", config)
        kms.append(warm)
        seen["warm_pooled"] = warm.provisioner._pooled is not None  # type: ignore[union-attr]
        seen["taken"] = seen["privates"][:1] == [str(warm.provisioner._pooled.private.path)]  # type: ignore[union-attr]
        seen["refilled"] = pool.wait_ready(1, timeout=60)
        seen["cold"], seen["warm"] = seen_by(cold), seen_by(warm)
        execute(warm, "open('from-pooled.txt', 'w').write('hi')")
        seen["cold_made"], seen["warm_made"] = made_by(cold), made_by(warm)
        first = warm.provisioner.container_id  # type: ignore[union-attr]
        warm.restart_kernel(now=True)
        seen["restart_pooled"] = warm.provisioner._pooled is not None  # type: ignore[union-attr]
        seen["privates"].append(str(warm.provisioner._pooled.private.path))  # type: ignore[union-attr]
        seen["restart_container"] = [first, warm.provisioner.container_id]  # type: ignore[union-attr]
        seen["first_after_restart"] = runtime.state(first) is not None
        seen["restart_cwd"] = execute(warm, "import os; print(os.getcwd())").strip()
    finally:
        for km in kms:
            if km.has_kernel:
                km.shutdown_kernel(now=True)
    # The refill after the restart, idle: the pool's exit hook removes it with its folder.
    seen["refilled_again"] = pool.wait_ready(1, timeout=60)
    seen["privates"] += [str(m.private.path) for m in slot.ready]
    seen["pooled_at_exit"] = pooled_left(runtime)
    print(json.dumps(seen))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
