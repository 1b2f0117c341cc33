"""The warm pool on a real Docker engine: a pooled kernel is indistinguishable from a cold one,
the pool refills, restarts and concurrent starts take their own members, a pool that cannot
fill leaves starts cold, and server exit or `gc` leave no pooled container."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.manager import AsyncKernelManager, KernelManager

from nbcontainers.kernels import pool as pool_module
from nbcontainers.kernels.orphans import find_orphans, remove_orphans
from nbcontainers.kernels.pooled import POOL_ROLE
from nbcontainers.labels import ROLE

from ..drive import connected, run
from .pool_alike import assert_alike, ipython_dir, made
from .pooled_starts import seen_by, start_nbc_python

pytestmark = pytest.mark.docker


def test_pooled_kernel_equals_a_cold_one_and_the_pool_refills(
    pool: Any, runtime: Any, tmp_path: Path
) -> None:
    notebook = tmp_path / "project" / "nb"
    notebook.mkdir(parents=True)
    (notebook / "data.csv").write_text("a,b\n")
    (tmp_path / "elsewhere").mkdir()
    ipython = ipython_dir(tmp_path)
    config = {"pool_size": 1, "workspace_root": str(tmp_path), "env": {"IPYTHONDIR": ipython}}
    cold = start_nbc_python(notebook, "project/nb/a.ipynb", **config)
    pooled = restarted = None
    try:
        assert cold.provisioner._pooled is None  # nothing was pooled yet: this one is cold
        assert pool.wait_ready(1, timeout=60)  # ...and the pool fills behind it
        # No config file is Python here: the member started its kernel early (sockets bound).
        assert _bound_early(pool) == ["k-1", "k-2", "k-3", "k-4", "k-5"]
        pooled = start_nbc_python(notebook, "project/nb/b.ipynb", **config)
        assert pooled.provisioner._pooled is not None
        assert pool.wait_ready(1, timeout=60)  # refilled after the take
        a, b = seen_by(cold), seen_by(pooled)
        sessions = ("project/nb/a.ipynb", "project/nb/b.ipynb")
        assert_alike(a, b, notebook, tmp_path, sessions)
        assert b["ids"] == [os.getuid(), os.getgid(), a["ids"][2]]
        host_a, host_b = _made(runtime, cold), _made(runtime, pooled)
        assert host_b["mounts"] == host_a["mounts"]
        assert host_b == host_a
        # A restart takes a fresh pooled kernel: new container, the same socket paths.
        first = pooled.provisioner.container_id
        pooled.restart_kernel(now=True)
        restarted = pooled
        assert pooled.provisioner._pooled is not None
        assert pooled.provisioner.container_id != first
        assert runtime.state(first) is None
        with connected(pooled) as kc:
            out, _ = run(kc, "import os; print(os.getcwd())")
        assert out.strip() == str(notebook), out
    finally:
        for km in (cold, pooled, restarted):
            if km is not None and km.has_kernel:
                km.shutdown_kernel(now=True)
    assert not list(tmp_path.glob("nbc-*"))


def _made(runtime: Any, km: KernelManager) -> dict[str, Any]:
    return made(runtime.api.inspect_container(km.provisioner.container_id))


def _bound_early(pool: Any) -> list[str]:
    """The sockets the pool's one ready member has bound while it waits."""
    [slot] = pool._slots.values()
    return sorted(p.name for p in slot.ready[0].private.sockets.iterdir() if p.is_socket())


def test_a_python_config_file_runs_only_after_the_hand_over(pool: Any, tmp_path: Path) -> None:
    # Config files are code: this one notes where and for whom it ran.
    config_file = (
        "import os\n"
        "c.InteractiveShellApp.exec_lines = ["
        "'CONFIG = %r' % [os.getcwd(), os.environ.get('JPY_SESSION_NAME')]]\n"
    )
    ipython = ipython_dir(tmp_path, config_file)
    config = {"pool_size": 1, "workspace_root": str(tmp_path), "env": {"IPYTHONDIR": ipython}}
    start_nbc_python(tmp_path, "first.ipynb", **config).shutdown_kernel(now=True)  # learn the pool
    assert pool.wait_ready(1, timeout=60)
    assert _bound_early(pool) == []  # the member waits with its kernel not yet started
    km = start_nbc_python(tmp_path, "second.ipynb", **config)
    try:
        assert km.provisioner._pooled is not None
        with connected(km) as kc:
            out, reply = run(kc, "print(CONFIG, STARTUP)")
        assert reply["status"] == "ok", out
        seen = [str(tmp_path), "second.ipynb"]
        assert out.strip() == f"{seen} {seen}"
    finally:
        km.shutdown_kernel(now=True)


def test_two_starts_at_once_get_two_kernels(pool: Any, tmp_path: Path) -> None:
    config = {"pool_size": 2, "workspace_root": str(tmp_path)}
    start_nbc_python(tmp_path, "first.ipynb", **config).shutdown_kernel(now=True)  # learn the pool
    assert pool.wait_ready(2, timeout=90)

    async def both() -> set[str | None]:
        kms = [AsyncKernelManager(kernel_name="nbc-python") for _ in range(2)]
        for km in kms:
            km.kernel_spec.metadata["kernel_provisioner"]["config"].update(config)
        try:
            await asyncio.gather(*(km.start_kernel(cwd=str(tmp_path)) for km in kms))
            assert all(km.provisioner._pooled is not None for km in kms)
            keys = set()
            for km in kms:
                kc = km.client()
                kc.start_channels()
                try:
                    await kc.wait_for_ready(timeout=30)
                    out: list[str] = []
                    reply = await kc.execute_interactive(
                        "import json\n"
                        "print(json.load(open('/run/nbcontainers/kernel.json'))['key'])",
                        output_hook=lambda m, out=out: out.append(m["content"].get("text", "")),
                    )
                    assert reply["content"]["status"] == "ok"
                    # Each kernel was handed its own start's connection (and so its key).
                    key = km.get_connection_info()["key"]
                    assert "".join(out).strip() == key.decode()
                    keys.add(key)
                finally:
                    kc.stop_channels()
            assert len(keys) == 2
            return {km.provisioner.container_id for km in kms}
        finally:
            for km in kms:
                if km.has_kernel:
                    await km.shutdown_kernel(now=True)

    assert len(asyncio.run(both())) == 2  # two containers


def test_a_pool_that_cannot_fill_leaves_starts_cold(
    pool: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real_start = pool_module._start

    def missing_image(key: str, request: Any) -> Any:
        spec = request.spec.__class__(**{**request.spec.__dict__, "image": "nbcontainers/none:x"})
        return real_start(key, request.__class__(**{**request.__dict__, "spec": spec}))

    monkeypatch.setattr(pool_module, "_start", missing_image)
    config = {"pool_size": 1, "workspace_root": str(tmp_path)}
    with caplog.at_level(logging.WARNING, logger="nbcontainers.pool"):
        for session in ("a.ipynb", "b.ipynb"):
            km = start_nbc_python(tmp_path, session, **config)
            try:
                assert km.provisioner._pooled is None
                with connected(km) as kc:
                    out, _ = run(kc, "print(6 * 7)")
                assert out.strip() == "42"
            finally:
                km.shutdown_kernel(now=True)
            assert not pool.wait_ready(1, timeout=0.5)
    lines = [r.getMessage() for r in caplog.records if "cannot fill" in r.getMessage()]
    assert len(lines) == 1 and "kernels start cold" in lines[0], lines


SERVER = """
import os, sys, time
from jupyter_client.manager import KernelManager
from nbcontainers.kernels.pool import kernel_pool
km = KernelManager(kernel_name="nbc-python")
km.kernel_spec.metadata["kernel_provisioner"]["config"].update(
    {"pool_size": 1, "workspace_root": sys.argv[1]})
km.start_kernel(cwd=sys.argv[1])
km.shutdown_kernel(now=True)
assert kernel_pool().wait_ready(1, timeout=60)
print("ready", flush=True)
if sys.argv[2] == "crash":
    os._exit(0)  # no atexit: the pooled container stays behind for gc
"""


def test_server_exit_and_gc_leave_no_pooled_container(
    python_image: str, runtime: Any, tmp_path: Path
) -> None:
    def server(how: str) -> int:
        proc = subprocess.run(
            [sys.executable, "-c", SERVER, str(tmp_path), how],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert "ready" in proc.stdout, proc.stderr[-2000:]
        return proc.returncode

    before = {s.id for s in runtime.list({ROLE: POOL_ROLE})}
    assert server("exit") == 0
    assert {s.id for s in runtime.list({ROLE: POOL_ROLE})} == before  # removed at exit
    server("crash")
    left = [s for s in runtime.list({ROLE: POOL_ROLE}) if s.id not in before]
    assert len(left) == 1, left  # a server that dies leaves its pool behind...
    private = Path(left[0].labels["io.nbcontainers.private-dir"])
    assert private.is_dir()
    orphans = [o for o in find_orphans(runtime) if o.container.id == left[0].id]
    assert orphans and orphans[0].reason == "its Jupyter server is gone"
    remove_orphans(runtime, orphans)  # ...and `nbcontainers gc` sweeps it
    assert runtime.state(left[0].id) is None and not private.exists()


def test_idle_members_stay_under_the_memory_cap(
    pool: Any, runtime: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # An idle member uses ~36 MiB here: a 50 MiB cap holds one of the three asked for.
    config = {"pool_size": 3, "pool_max_memory": "50m", "workspace_root": str(tmp_path)}
    with caplog.at_level(logging.WARNING, logger="nbcontainers.pool"):
        start_nbc_python(tmp_path, "first.ipynb", **config).shutdown_kernel(now=True)
        assert pool.wait_ready(1, timeout=60)
        assert not pool.wait_ready(2, timeout=3)  # no second one comes
    [member] = [s for s in runtime.list({ROLE: POOL_ROLE}) if s.running]
    used = runtime.stats(member.id).memory_used
    assert 0 < used <= 50 * 2**20 < 2 * used, used  # one fits, two would not
    lines = [r.getMessage() for r in caplog.records if "capped" in r.getMessage()]
    assert len(lines) == 1 and "pool_max_memory 50 MiB" in lines[0], lines
