"""Runtimes are found by name through the ``nbcontainers.runtimes`` entry point group, so
another installed package adds an engine without touching this one."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from nbcontainers.errors import ConfigError
from nbcontainers.runtimes import (
    ENTRY_POINT_GROUP,
    available_runtimes,
    engine_facts,
    get_runtime,
)
from nbcontainers.runtimes.docker.runtime import DockerRuntime
from nbcontainers.runtimes.fake import FakeRuntime


def test_docker_is_registered() -> None:
    assert available_runtimes()["docker"] == "nbcontainers.runtimes.docker:DockerRuntime"
    assert isinstance(get_runtime("docker"), DockerRuntime)


def test_a_third_party_runtime_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A real distribution on sys.path: a module and a dist-info naming it in the group.
    (tmp_path / "acme_engine.py").write_text(
        "from nbcontainers.runtimes.fake import FakeRuntime\n"
        "class AcmeRuntime(FakeRuntime):\n    pass\n"
    )
    info = tmp_path / "acme_engine-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-engine\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\nacme = acme_engine:AcmeRuntime\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    runtime = get_runtime("acme")
    assert isinstance(runtime, FakeRuntime) and type(runtime).__name__ == "AcmeRuntime"
    sys.modules.pop("acme_engine", None)


def test_an_unknown_runtime_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"Unknown runtime 'dokcer'\. Did you mean 'docker'\?"):
        get_runtime("dokcer")


def test_a_broken_registration_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = tmp_path / "broken_engine-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-engine\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nbroken = no_such_mod:X\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match="can't be loaded"):
        get_runtime("broken")


def test_auto_prefers_docker_host(monkeypatch: pytest.MonkeyPatch) -> None:
    from nbcontainers.runtimes import choose_engine
    from nbcontainers.runtimes.podman.runtime import PodmanRuntime

    monkeypatch.setenv("DOCKER_HOST", "unix:///run/user/7/podman/podman.sock")
    assert choose_engine() == (
        "podman",
        "unix:///run/user/7/podman/podman.sock",
        "DOCKER_HOST is set",
    )
    runtime = get_runtime("auto")
    assert isinstance(runtime, PodmanRuntime)
    assert runtime.endpoint == "unix:///run/user/7/podman/podman.sock"
    monkeypatch.setenv("DOCKER_HOST", "tcp://10.0.0.5:2376")
    assert choose_engine()[:2] == ("docker", "tcp://10.0.0.5:2376")


def test_auto_as_root_is_the_system_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    from nbcontainers.runtimes import choose_engine

    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setattr("os.getuid", lambda: 0)
    assert choose_engine() == ("docker", None, "the system engine")


def test_auto_for_a_user_is_their_rootless_engine(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import socket

    from nbcontainers.runtimes import choose_engine

    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setattr("os.getuid", lambda: 4242)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    monkeypatch.setattr("shutil.which", lambda name: f"/usr/bin/{name}")
    assert choose_engine() == ("podman", None, "your rootless Podman engine")
    with socket.socket(socket.AF_UNIX) as rootless_docker:
        rootless_docker.bind(str(tmp_path / "docker.sock"))
        assert choose_engine() == (
            "docker",
            f"unix://{tmp_path / 'docker.sock'}",
            "your rootless Docker engine",
        )
    monkeypatch.setattr("shutil.which", lambda name: None)
    assert choose_engine()[0] == "docker"


def test_kernel_starts_share_one_runtime_per_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    from nbcontainers.runtimes import shared_runtime
    from nbcontainers.runtimes.podman.runtime import PodmanRuntime

    monkeypatch.setenv("DOCKER_HOST", "unix:///run/user/7/podman/podman.sock")
    first = shared_runtime("auto")
    assert isinstance(first, PodmanRuntime) and shared_runtime("auto") is first
    assert isinstance(shared_runtime("docker"), DockerRuntime)
    assert shared_runtime("docker") is shared_runtime("docker") is not first
    # "auto" is asked again each time: another engine gets its own runtime.
    monkeypatch.setenv("DOCKER_HOST", "tcp://10.0.0.5:2376")
    other = shared_runtime("auto")
    assert isinstance(other, DockerRuntime) and other.endpoint == "tcp://10.0.0.5:2376"
    # An explicit name follows DOCKER_HOST too: the runtime it made reads it once.
    docker_here = shared_runtime("docker")
    monkeypatch.setenv("DOCKER_HOST", "tcp://10.0.0.6:2376")
    assert shared_runtime("docker") is not docker_here


def test_the_registry_is_the_entry_point_group() -> None:
    # One table: pyproject.toml's entry points, for our engines as for anyone's.
    from importlib.metadata import entry_points

    ours = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    assert available_runtimes() == ours
    assert set(ours) >= {"docker", "podman", "swarm", "kubernetes"}


class _Counting(FakeRuntime):
    asked = 0

    def ping(self):  # type: ignore[no-untyped-def]
        type(self).asked += 1
        return super().ping()


def test_engine_facts_are_kept_per_runtime_for_a_while(monkeypatch: pytest.MonkeyPatch) -> None:
    """The one caching rule: ping() always asks; engine_facts keeps its answer per runtime
    object for FACTS_TTL seconds, and fresh=True asks again."""
    import nbcontainers.runtimes as runtimes

    one, two = _Counting(), _Counting()
    _Counting.asked = 0
    assert engine_facts(one) is engine_facts(one)
    assert _Counting.asked == 1
    engine_facts(two)  # another runtime object: its own entry
    assert _Counting.asked == 2
    engine_facts(one, fresh=True)
    assert _Counting.asked == 3
    now = time.monotonic()
    monkeypatch.setattr(runtimes.time, "monotonic", lambda: now + runtimes.FACTS_TTL + 1)
    engine_facts(one)
    assert _Counting.asked == 4
    one.ping()
    assert _Counting.asked == 5  # the health check is never answered from the cache


def test_docker_ping_always_asks_the_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    from nbcontainers.runtimes.fake import FakeRuntime as Facts

    asked: list[str] = []
    runtime = DockerRuntime("unix:///nowhere.sock")
    monkeypatch.setattr(runtime, "_ask_facts", lambda: asked.append("x") or Facts().ping())
    runtime.ping()
    runtime.ping()
    assert asked == ["x", "x"]
    engine_facts(runtime)
    engine_facts(runtime)
    assert asked == ["x", "x", "x"]
