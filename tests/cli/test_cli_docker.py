"""The `nbcontainers` CLI as users run it (the installed script, a subprocess) against the real
engine: kernelspecs, gc of orphaned kernel containers, doctor."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from nbcontainers.labels import KERNEL_ID, SERVER_HOST, SERVER_PID, SERVER_STARTED
from nbcontainers.runtimes import ContainerSpec

pytestmark = pytest.mark.docker

BIN = Path(sys.executable).parent


def test_kernelspec_install_cli(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(BIN / "nbcontainers"), "kernelspec", "install", "--prefix", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    spec_dir = tmp_path / "share" / "jupyter" / "kernels" / "nbc-python"
    spec = json.loads((spec_dir / "kernel.json").read_text())
    assert spec["metadata"]["kernel_provisioner"] == {
        "provisioner_name": "nbcontainers",
        "config": {"image": "python"},
    }
    assert (spec_dir / "logo-64x64.png").read_bytes().startswith(b"\x89PNG")
    for name in ("nbc-pytorch-cpu", "nbc-pytorch-gpu"):
        assert (tmp_path / "share" / "jupyter" / "kernels" / name / "kernel.json").is_file()


def test_gc_removes_orphans_and_keeps_live_kernels(python_image: str, runtime: Any) -> None:
    from nbcontainers.catalog.entries import load_catalog

    ref = load_catalog()["python"].ref
    me = str(os.getpid())

    def start(kernel_id: str, pid: str, started: str) -> str:
        return str(
            runtime.run(
                ContainerSpec(
                    image=ref,
                    command=("sleep", "300"),
                    name=f"nbc-gc-test-{kernel_id}",
                    labels={
                        KERNEL_ID: kernel_id,
                        SERVER_HOST: socket.gethostname(),
                        SERVER_PID: pid,
                        SERVER_STARTED: started,
                    },
                )
            )
        )

    from nbcontainers.labels import process_start_time

    orphan = start("orphan", "999999", "1")
    live = start("live", me, process_start_time(os.getpid()))
    try:
        dry = subprocess.run(
            [str(BIN / "nbcontainers"), "gc", "--dry-run"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "would remove nbc-gc-test-orphan" in dry.stdout
        assert runtime.state(orphan) is not None
        done = subprocess.run(
            [str(BIN / "nbcontainers"), "gc"], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        assert "nbc-gc-test-live" not in done.stdout
        assert runtime.state(orphan) is None
        assert runtime.state(live) is not None
    finally:
        runtime.remove(orphan)
        runtime.remove(live)


def test_doctor_reports(python_image: str) -> None:
    done = subprocess.run(
        [str(BIN / "nbcontainers"), "doctor"], capture_output=True, text=True, timeout=60
    )
    assert "[ok  ] engine: Docker" in done.stdout
    assert "image python" in done.stdout and "gpus" in done.stdout
    if not Path("/dev/nvidia0").exists():  # this host: no GPU, so no GPU advice at all
        assert "[skip] image pytorch-gpu: needs an NVIDIA GPU, none here" in done.stdout
        assert "images build pytorch-gpu" not in done.stdout
    assert "Traceback" not in done.stderr and done.returncode in (0, 1, 4), done.stdout


def _check(name: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "nbcontainers"), "images", "check", name, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_images_check_a_good_and_a_bad_image(python_image: str, runtime: Any) -> None:
    good = _check("python")
    assert good.returncode == 0, good.stdout + good.stderr
    report = json.loads(good.stdout)
    assert report["ok"] and report["problems"] == []
    assert report["facts"]["uid"] == 48213 and report["facts"]["home_writable"] is True
    assert report["facts"]["ipykernel"]
    # The local Debian base (debootstrap minbase) has no Python at all: the check says so.
    bad = _check("nbcontainers/base:bookworm")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    (problem,) = json.loads(bad.stdout)["problems"]
    assert problem.startswith("no python3 on the image's PATH"), problem


def test_images_prune_removes_exactly_an_old_hash_image(
    runtime: Any, python_image: str, tmp_path: Path
) -> None:
    """Two throwaway old-hash `nbcontainers/python` images: prune removes the unused one and
    keeps the one a stopped container was made from (and, of course, the current image)."""
    import uuid

    from nbcontainers.catalog.entries import load_catalog
    from nbcontainers.labels import SOURCE_HASH
    from nbcontainers.runtimes import BuildRequest

    tag = uuid.uuid4().hex[:12]
    old, held = f"nbcontainers/python:prune{tag}", f"nbcontainers/python:held{tag}"
    (tmp_path / "Dockerfile").write_text("FROM nbcontainers/base:bookworm\n")
    cid = ""
    try:
        for ref in (old, held):  # the labels differ, so the two are different images
            labels = {SOURCE_HASH: "0ld", "io.nbcontainers.test": ref}
            runtime.build(BuildRequest(context=tmp_path, tag=ref, labels=labels))
        spec = ContainerSpec(image=held, command=("true",), labels={KERNEL_ID: f"prune-{tag}"})
        cid = runtime.run(spec)
        assert runtime.wait(cid, timeout=30) == 0  # stopped, not removed: it still holds held
        done = subprocess.run(
            [str(BIN / "nbcontainers"), "images", "prune", "python", "-y", "--json"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert [r["tags"] for r in report["removed"]] == [[old]] and report["size"] > 0
        why = {r["tags"][0]: r["why"] for r in report["kept"] if r["tags"]}
        assert why[held] == "used by a container"
        assert why[load_catalog()[python_image].ref] == "in the catalog"
        assert runtime.image_info(old) is None and runtime.image_info(held) is not None
        assert runtime.image_info(load_catalog()[python_image].ref) is not None
    finally:
        if cid:
            runtime.remove(cid)
        runtime.remove_image(held)
        runtime.remove_image(old)
