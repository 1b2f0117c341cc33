"""What users read when something is wrong: dead engine, unknown image, bad config, missing
image, GPU image without a GPU. Each is fast and names the fix."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from jupyter_client.manager import KernelManager

from nbcontainers.errors import (
    ConfigError,
    EngineUnavailable,
    GPUUnavailable,
    ImageMissing,
    UnknownImage,
)

pytestmark = pytest.mark.docker

CLI = [sys.executable, "-m", "nbcontainers.cli"]


def test_dead_engine_is_reported_fast_with_the_fix(tmp_path: Path) -> None:
    env = {"DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock", "PATH": "/usr/bin:/bin"}
    started = time.monotonic()
    done = subprocess.run(
        [*CLI, "images", "list"], capture_output=True, text=True, env=env, timeout=30
    )
    elapsed = time.monotonic() - started
    assert done.returncode == EngineUnavailable.exit_code
    assert "Error: Cannot reach the Docker engine at unix://" in done.stderr
    assert "DOCKER_HOST" in done.stderr
    assert "Traceback" not in done.stderr
    assert elapsed < 5, f"took {elapsed:.1f} s"


def test_dead_engine_at_kernel_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runtime: object
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    km = KernelManager(kernel_name="nbc-python")
    started = time.monotonic()
    with pytest.raises(EngineUnavailable, match="Cannot reach the Docker engine"):
        km.start_kernel(cwd=str(tmp_path))
    assert time.monotonic() - started < 5


def test_unknown_config_key_names_valid_ones(tmp_path: Path, runtime: object) -> None:
    km = KernelManager(kernel_name="nbc-python")
    km.kernel_spec.metadata["kernel_provisioner"]["config"]["gpu"] = "all"
    with pytest.raises(ConfigError) as info:
        km.start_kernel(cwd=str(tmp_path))
    msg = str(info.value)
    assert "'gpu'" in msg and "Valid keys:" in msg and "gpus" in msg


def test_unknown_image_in_kernelspec_gets_did_you_mean(tmp_path: Path, runtime: object) -> None:
    km = KernelManager(kernel_name="nbc-python")
    km.kernel_spec.metadata["kernel_provisioner"]["config"]["image"] = "pyton"
    with pytest.raises(ConfigError, match=r"Unknown image 'pyton'\. Did you mean 'python'\?"):
        km.start_kernel(cwd=str(tmp_path))


def test_missing_image_fails_at_once_with_the_command(
    tmp_path: Path, runtime: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "images.json").write_text(
        json.dumps({"images": {"ghost": {"ref": "nbcontainers-test/ghost:never-built"}}})
    )
    monkeypatch.setenv("NBCONTAINERS_CONFIG_DIR", str(config))
    km = KernelManager(kernel_name="nbc-python")
    km.kernel_spec.metadata["kernel_provisioner"]["config"]["image"] = "ghost"
    started = time.monotonic()
    with pytest.raises(ImageMissing, match=r"nbcontainers images pull ghost"):
        km.start_kernel(cwd=str(tmp_path))
    assert time.monotonic() - started < 5


def test_gpu_image_without_gpu_names_cpu_image(tmp_path: Path, runtime: object) -> None:
    from nbcontainers.hostgpus import detect_gpus

    if detect_gpus():
        pytest.skip("this host has a GPU; the no-GPU message can't be shown here")
    km = KernelManager(kernel_name="nbc-pytorch-gpu")
    with pytest.raises(GPUUnavailable) as info:
        km.start_kernel(cwd=str(tmp_path))
    assert "nbc-pytorch-cpu" in str(info.value)


def test_cli_unknown_image_did_you_mean(runtime: object) -> None:
    done = subprocess.run(
        [*CLI, "images", "build", "pytorch-cpy"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == UnknownImage.exit_code == 2  # a usage error, like a bad option
    assert "Did you mean 'pytorch-cpu'?" in done.stderr
    assert "Traceback" not in done.stderr
