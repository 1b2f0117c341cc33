"""`nbcontainers doctor` against the in-memory engine: what it says about the engine, and that
every fix line is right on the host it is shown on (GPU or not, checkout or not)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nbcontainers.catalog import load_catalog
from nbcontainers.doctor import Check, HostFacts, engine_fix, exit_code, run_checks
from nbcontainers.gpu import GPU, HostGPUs
from nbcontainers.runtimes.fake import FakeRuntime


def _by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def test_a_user_on_a_root_engine_is_warned(
    fake_runtime: FakeRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("os.getuid", lambda: 1000)
    checks = _by_name(run_checks(fake_runtime, why="DOCKER_HOST is set"))
    assert checks["engine"].status == "ok"
    assert "runs as root (picked: DOCKER_HOST is set;" in checks["engine"].detail
    access = checks["engine access"]
    assert access.status == "warn" and "docker group" in access.detail
    assert "podman" in access.fix


def test_a_rootless_engine_without_limits(
    fake_runtime: FakeRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("os.getuid", lambda: 1000)
    fake_runtime.rootless = True
    fake_runtime.limits = frozenset({"shm"})
    checks = _by_name(run_checks(fake_runtime))
    assert "rootless" in checks["engine"].detail
    assert "engine access" not in checks
    assert checks["limits"].status == "warn"
    assert "cpus, memory, pids" in checks["limits"].detail


def test_root_on_the_system_engine_gets_no_access_warning(
    fake_runtime: FakeRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("os.getuid", lambda: 0)
    checks = _by_name(run_checks(fake_runtime))
    assert "engine access" not in checks and "limits" not in checks
    assert checks["builder"].status == "ok"


def test_a_dead_engine_fails_the_first_check(fake_runtime: FakeRuntime) -> None:
    fake_runtime.available = False
    (only,) = run_checks(fake_runtime)
    assert only.name == "engine" and only.status == "fail"


DEBIAN = HostFacts(None, "Linux", systemd=True, docker_installed=False, podman_installed=False)
CHECKOUT = HostFacts(Path("/src/nbc"), "Linux", True, True, False)


def _gpus(monkeypatch: pytest.MonkeyPatch, gpus: HostGPUs) -> None:
    monkeypatch.setattr("nbcontainers.doctor.checks.detect_gpus", lambda: gpus)


def test_without_a_gpu_no_gpu_image_is_advised(
    fake_runtime: FakeRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    _gpus(monkeypatch, HostGPUs(detail="no NVIDIA driver found"))
    fake_runtime.remove_image(load_catalog()["pytorch-gpu"].ref)
    checks = run_checks(fake_runtime, host=DEBIAN)
    gpu = _by_name(checks)["image pytorch-gpu"]
    assert (gpu.status, gpu.fix) == ("skip", "")
    assert gpu.detail == "needs an NVIDIA GPU, none here; use pytorch-cpu"
    assert "nbc-pytorch-gpu" not in " ".join(c.name for c in checks)
    assert not any("pytorch-gpu" in c.fix for c in checks)
    assert exit_code(checks) == 0


def test_with_a_gpu_a_missing_gpu_image_is_built(
    fake_runtime: FakeRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    _gpus(monkeypatch, HostGPUs((GPU(0, "NVIDIA H100", "GPU-1", 81559),), "550.54", "12.4"))
    fake_runtime.remove_image(load_catalog()["pytorch-gpu"].ref)
    checks = _by_name(run_checks(fake_runtime, host=DEBIAN))
    assert checks["gpus"].detail.startswith("0: NVIDIA H100; driver 550.54, CUDA 12.4")
    gpu = checks["image pytorch-gpu"]
    assert (gpu.status, gpu.fix, gpu.code) == ("fail", "nbcontainers images build pytorch-gpu", 4)
    assert exit_code(list(checks.values())) == 4


@pytest.mark.parametrize(
    ("host", "engine", "fix"),
    [
        (CHECKOUT, "docker", "make -C /src/nbc engine"),
        (DEBIAN, "docker", "sudo apt-get install docker.io && sudo systemctl start docker"),
        (HostFacts(None, "Linux", False, True, False), "docker", "sudo dockerd &"),
        (HostFacts(None, "Darwin", False, False, False), "docker", "start Docker Desktop"),
        (DEBIAN, "podman", "sudo apt-get install podman uidmap slirp4netns catatonit"),
        (HostFacts(None, "Linux", True, False, True), "podman", "systemctl --user enable --now"),
    ],
)
def test_the_engine_fix_fits_the_host(host: HostFacts, engine: str, fix: str) -> None:
    assert engine_fix(engine, host).startswith(fix)


def test_engine_down_outside_a_checkout(fake_runtime: FakeRuntime) -> None:
    fake_runtime.available = False
    (only,) = run_checks(fake_runtime, host=DEBIAN)
    assert "make" not in only.fix and "scripts/" not in only.fix and "make" not in only.detail
    assert only.code == 3


def test_a_user_image_whose_folder_is_missing(
    fake_runtime: FakeRuntime, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("NBCONTAINERS_CONFIG_DIR", str(tmp_path))
    (tmp_path / "images.json").write_text('{"images": {"dev": {"build": "~/no/such/dir"}}}')
    dev = _by_name(run_checks(fake_runtime, host=DEBIAN))["image dev"]
    assert dev.status == "fail" and "pull" not in dev.fix
    assert "no/such/dir does not exist" in dev.detail and "e3b0c44298fc" not in dev.detail
    assert dev.code == 9
