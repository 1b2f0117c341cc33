"""Runtimes are found by name through the ``nbcontainers.runtimes`` entry point group, so
another installed package adds an engine without touching this one."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from nbcontainers.errors import ConfigError
from nbcontainers.runtimes import ENTRY_POINT_GROUP, available_runtimes, get_runtime
from nbcontainers.runtimes.docker import DockerRuntime
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
