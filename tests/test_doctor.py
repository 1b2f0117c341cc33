"""`nbcontainers doctor` against the in-memory engine: what it says about the engine itself."""

from __future__ import annotations

import pytest

from nbcontainers.doctor import Check, run_checks
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
