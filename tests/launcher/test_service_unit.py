"""The start service's parts without an engine: the settings it reads (Jupyter config files
under the kernelspec's config), where its socket lives and which launchers share one."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from nbcontainers.errors import ConfigError
from nbcontainers.launch.client import runtime_dir, service_path
from nbcontainers.launch.settings import config_files_section, launch_config, start_settings


@pytest.fixture
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "jupyter-config"
    folder.mkdir()
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(folder))
    return folder


def test_config_files_are_read_as_jupyter_server_reads_them(
    config_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (config_dir / "jupyter_config.py").write_text(
        "c.ContainerProvisioner.cpus = 1.5\nc.ContainerProvisioner.mem_limit = '4g'\n"
    )
    # jupyter_server_config wins over jupyter_config, as in a server.
    (config_dir / "jupyter_server_config.json").write_text(
        '{"ContainerProvisioner": {"mem_limit": "1g", "pool_size": 2,'
        ' "pool_warm": ["nbc-python"], "bogus": 1}}'
    )
    with caplog.at_level(logging.WARNING):
        section = config_files_section(logging.getLogger("t"))
    assert section == {"cpus": 1.5, "mem_limit": "1g", "pool_size": 2}
    assert "c.ContainerProvisioner.bogus" in caplog.text
    # The kernelspec's own config wins over the files (as jupyter_client's kwargs do).
    config, _ = launch_config("nbc-no-such-kernel", "python")
    assert config["image"] == "python" and config["mem_limit"] == "1g"
    settings = start_settings(config)
    assert settings.pool_size == 2 and settings.launch.cpus == 1.5
    assert settings.launch.transport == "ipc"  # the launcher forwards to Unix sockets


def test_a_broken_config_file_is_an_error_naming_it(config_dir: Path) -> None:
    (config_dir / "jupyter_server_config.py").write_text("c.ContainerProvisioner.mem_limit = (\n")
    with pytest.raises(ConfigError, match="jupyter_server_config"):
        config_files_section()


def test_the_socket_folder_must_be_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    assert runtime_dir() == runtime / "nbcontainers"
    assert (runtime / "nbcontainers").stat().st_mode & 0o777 == 0o700
    (runtime / "nbcontainers").chmod(0o755)  # others may enter: refused, with the fix
    with pytest.raises(ConfigError, match=r"open to other users.*chmod 700"):
        runtime_dir()


@pytest.mark.skipif(os.geteuid() != 0, reason="a folder of another user needs root")
def test_another_user_cannot_plant_the_launchers_socket_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The old fallback was /tmp/nbc-launch-<uid>, a name anyone can make first: another user
    who made it (theirs, 0700) denied this user every launched kernel. Now the folder is in the
    user's runtime folder (here, with no XDG_RUNTIME_DIR and no /run/user/UID: under the
    home), so the planted one is never looked at."""
    temp, home = tmp_path / "tmp", tmp_path / "home"
    temp.mkdir(mode=0o1777)
    home.mkdir()
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setenv("TMPDIR", str(temp))
    monkeypatch.setenv("HOME", str(home))
    planted = temp / f"nbc-launch-{os.getuid()}"
    planted.mkdir(mode=0o700)
    os.chown(planted, 65534, 65534)  # nobody's
    folder = runtime_dir()
    assert folder != planted and not folder.is_relative_to(temp)
    info = folder.lstat()
    assert info.st_uid == os.getuid() and info.st_mode & 0o777 == 0o700


def test_launchers_share_a_service_unless_their_environment_differs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    env = {"PATH": "/usr/bin", "HOME": "/root"}
    one = service_path(env)
    # A frontend's per-kernel variables don't matter; an engine's address does.
    assert service_path({**env, "JPY_SESSION_NAME": "/a.ipynb", "PWD": "/x"}) == one
    assert service_path({**env, "DOCKER_HOST": "unix:///other.sock"}) != one


@pytest.mark.parametrize("raw", ["ten", "-5", "nan", "inf"])
def test_a_bad_idle_time_is_named_with_the_fix_and_no_service_starts(
    raw: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from nbcontainers.launch import service

    monkeypatch.setenv("NBCONTAINERS_LAUNCH_IDLE", raw)
    sock = tmp_path / "launch.sock"
    assert service.main([str(sock)]) == 2
    assert f"NBCONTAINERS_LAUNCH_IDLE={raw!r} is not a number of seconds" in capsys.readouterr().err
    assert not sock.exists()  # nothing listens


def test_the_idle_time_defaults_and_reads_whole_or_fractional_seconds() -> None:
    from nbcontainers.launch.service import IDLE_EXIT, _idle_exit

    assert (_idle_exit(""), _idle_exit("30"), _idle_exit("0.5")) == (IDLE_EXIT, 30.0, 0.5)
