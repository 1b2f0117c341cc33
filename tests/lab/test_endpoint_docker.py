"""GET/DELETE /api/nbcontainers/kernels on a real Jupyter Server with real Docker kernels:
what a script sees (image, digest, engine, memory against the cap), a 500 MB allocation
showing up, an OOM kill kept and explained, stopping, and nothing of another owner's."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest

from nbcontainers.labels import KERNEL_ID, OWNER
from nbcontainers.runtimes import ContainerSpec

from .labserver import LIMIT, SMALL, api, execute, kernels, lab_server, wait_for

pytestmark = pytest.mark.docker
MB = 1 << 20


def test_endpoint_on_real_kernels(
    runtime: Any,
    python_image: str,
    tmp_path: Path,
    kernelspec_prefix: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from nbcontainers.catalog.entries import load_catalog

    # Another user's kernel container on the same engine (a shared host's system Docker).
    other = runtime.run(
        ContainerSpec(
            load_catalog()[python_image].ref,
            ("sleep", "300"),
            labels={KERNEL_ID: "someone-elses-kernel", OWNER: "nbc-not-this-user"},
        )
    )
    try:
        with lab_server(tmp_path, kernelspec_prefix, monkeypatch, frontend=False) as (
            base,
            token,
            _root,
        ):
            _check(base, token, runtime, other)
    finally:
        runtime.remove(other)


def _check(base: str, token: str, runtime: Any, other: str) -> None:
    # Authenticated like every Jupyter API.
    assert api(base, None, "/api/nbcontainers/kernels")[0] == 403
    assert api(base, "wrong-token", "/api/nbcontainers/kernels")[0] == 403

    status, session = api(
        base,
        token,
        "/api/sessions",
        "POST",
        {"path": "a.ipynb", "type": "notebook", "name": "", "kernel": {"name": SMALL}},
    )
    assert status == 201, status
    kid = session["kernel"]["id"]

    def mine() -> dict[str, Any] | None:
        found = [r for r in kernels(base, token) if r["kernel_id"] == kid and not r["ended_at"]]
        return found[0] if found and found[0]["memory_used"] else None

    record = wait_for("the kernel's record with a memory figure", mine)
    print("record:", record)
    assert record["image"] == "python" and record["image_ref"].startswith("nbcontainers/python")
    assert record["digest"] and record["digest"].startswith("sha256:")
    assert record["engine"] == "Docker"
    assert record["notebook"] == "a.ipynb" and record["server_kernel"] and not record["relayed"]
    assert (record["memory_limit"], record["mem_limit_setting"]) == (LIMIT, "1g")
    assert record["gpus"] == []  # no NVIDIA tools in a CPU kernel: no GPUs, not "unknown"
    assert record["state"] == "running" and record["uptime_s"] is not None

    # Nothing of another owner's: not listed, and its ids are as unknown as made-up ones.
    listed = {r["container_id"] for r in kernels(base, token)}
    assert other not in listed
    for key in ("someone-elses-kernel", other, other[:12]):
        assert api(base, token, f"/api/nbcontainers/kernels/{key}")[0] == 404
        assert api(base, token, f"/api/nbcontainers/kernels/{key}/logs")[0] == 404
        assert api(base, token, f"/api/nbcontainers/kernels/{key}", "DELETE")[0] == 404
    assert runtime.state(other).running  # the DELETE did not touch it

    status, logs = api(base, token, f"/api/nbcontainers/kernels/{kid}/logs?tail=5")
    assert status == 200 and logs["kernel_id"] == kid and isinstance(logs["logs"], str)
    assert api(base, token, f"/api/nbcontainers/kernels/{kid}/logs?tail=x")[0] == 400

    # A cell that holds 500 MB: the next samples show it.
    before = record["memory_used"]
    assert "held" in execute(base, token, kid, "x = b'x' * (500 << 20); print('held')")
    risen = wait_for(
        "memory to rise by ~500 MB",
        lambda: [r for r in [mine()] if r and r["memory_used"] - before > 450 * MB],
    )[0]
    print(f"memory before {before / MB:.0f} MB, after {risen['memory_used'] / MB:.0f} MB")
    assert risen["memory_used"] < LIMIT

    # Past the 1 GiB cap the engine kills the kernel: its record is kept, with the limit.
    container = risen["container_id"]
    # The kernel dies under the request: no idle ever comes.
    with contextlib.suppress(Exception):
        execute(base, token, kid, "y = b'y' * (900 << 20)", timeout=15)
    dead = wait_for(
        "the OOM-killed record",
        lambda: [r for r in kernels(base, token) if r["kernel_id"] == kid and r["ended_at"]],
    )[0]
    print("ended:", dead)
    assert dead["state"] == "oom-killed" and dead["oom_killed"]
    assert dead["container_id"] == container and dead["memory_limit"] == LIMIT
    assert "mem_limit" in dead["advice"] and dead["notebook"] == "a.ipynb"
    # The restarter brings the kernel back in a new container; the record of the dead one
    # stays listed apart.
    again = wait_for("the restarted kernel", mine)
    assert again["container_id"] != container

    # Stop: the server's kernel is shut down and its container removed.
    assert api(base, token, f"/api/nbcontainers/kernels/{kid}", "DELETE")[0] == 204
    assert kid not in {k["id"] for k in api(base, token, "/api/kernels")[1]}
    assert runtime.state(again["container_id"]) is None
    assert all(r["ended_at"] for r in kernels(base, token) if r["kernel_id"] == kid)
