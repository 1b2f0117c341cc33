"""The launcher without an engine: its command line, the kernelspec config it reads, the
connection files it refuses, the reaper's pipe, and a dead engine's error (no engine needed
to prove that one)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nbcontainers.catalog.entries import load_catalog
from nbcontainers.catalog.kernelspecs import kernel_json, notebook_kernel_json
from nbcontainers.errors import ConfigError
from nbcontainers.kernels.starter import container_argv
from nbcontainers.launch.launcher import _connection, _parse
from nbcontainers.launch.reaper import Reaper
from nbcontainers.launch.settings import kernelspec_config, start_settings


def test_kernelspec_argv_runs_the_launcher_and_names_the_kernel_command() -> None:
    spec = kernel_json(load_catalog(include_user=False)["python"])
    argv = spec["argv"]
    assert argv[:3] == ["python3", "-m", "nbcontainers.launch"]
    assert container_argv(argv) == [
        "python3",
        "-m",
        "ipykernel_launcher",
        "-f",
        "{connection_file}",
    ]
    assert spec["interrupt_mode"] == "message"
    args, command = _parse([a.replace("{connection_file}", "/c.json") for a in argv[3:]])
    assert (args.kernel, args.image, args.connection_file) == ("nbc-python", "python", "/c.json")
    assert command == ["python3", "-m", "ipykernel_launcher", "-f", "/c.json"]
    # Any other argv is the container's command as it is (a user's own kernelspec).
    assert container_argv(["python", "-m", "x"]) == ["python", "-m", "x"]


def test_notebook_kernelspec() -> None:
    spec = notebook_kernel_json()
    assert spec["display_name"] == "Container (from this notebook)"
    assert spec["metadata"]["kernel_provisioner"]["config"] == {"image": "@notebook"}
    assert spec["argv"][3:7] == ["--kernel", "nbc-notebook", "--image", "@notebook"]


def test_settings_are_checked_as_the_provisioner_checks_them() -> None:
    settings = start_settings({"image": "python", "mem_limit": "1g", "runtime": "docker"})
    assert settings.image == "python" and settings.runtime_name == "docker"
    assert settings.launch.mem_limit == "1g" and settings.launch.transport == "ipc"
    assert isinstance(settings.launch.env_allowlist, tuple)  # the trait's default, frozen
    with pytest.raises(ConfigError, match=r"'memory'.*Valid keys:.*mem_limit"):
        start_settings({"image": "python", "memory": "1g"})
    with pytest.raises(ConfigError, match="Bad kernel_provisioner config"):
        start_settings({"image": "python", "cpus": "lots"})


def test_a_pool_mounts_the_folder_above_as_under_the_provisioner() -> None:
    """Pooled kernels exist before their notebook: with no workspace_root, both ways in
    mount ``~`` (the provisioner: the server's root, which it has and the launcher has not),
    so one pool serves every notebook under it."""
    from nbcontainers.kernels.provisioner import ContainerProvisioner

    home = str(Path.home())
    assert start_settings({"image": "python", "pool_size": 1}).launch.workspace_root == home
    assert start_settings({"image": "python"}).launch.workspace_root == ""
    given = start_settings({"image": "python", "pool_size": 1, "workspace_root": "/srv/w"})
    assert given.launch.workspace_root == "/srv/w"
    provisioner = ContainerProvisioner(image="python", pool_size=1)
    assert provisioner.launch_config().workspace_root == home
    assert provisioner.launch_values("/srv/root")["workspace_root"] == "/srv/root"


def test_kernelspec_not_found_falls_back_to_the_image_given() -> None:
    assert kernelspec_config("nbc-no-such-kernel", "python") == ({"image": "python"}, {})
    with pytest.raises(ConfigError, match="nbcontainers kernelspec install"):
        kernelspec_config("nbc-no-such-kernel", "")


@pytest.mark.parametrize(
    ("transport", "ip", "words"),
    [
        ("ipc", "", "ipc://"),
        ("ipc", "/tmp/k\0x", "ipc:///tmp/k"),
        ("tcp", "0.0.0.0", "tcp://0.0.0.0"),
        ("udp", "127.0.0.1", "udp://127.0.0.1"),
    ],
)
def test_connection_files_it_cannot_serve(
    tmp_path: Path, transport: str, ip: str, words: str
) -> None:
    conn = tmp_path / "kernel-1.json"
    conn.write_text(json.dumps({"transport": transport, "ip": ip, "shell_port": 1}))
    with pytest.raises(ConfigError, match=f"{words}.*127.0.0.1 only, or on ipc"):
        _connection(str(conn))
    with pytest.raises(ConfigError, match="Cannot read the connection file"):
        _connection(str(tmp_path / "missing.json"))


def _exited(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return True
        time.sleep(0.02)
    return False


def test_reaper_leaves_when_told_done_and_when_the_launcher_ends_early() -> None:
    reaper = Reaper.start()
    pid = reaper.pid
    assert not _exited(pid, 0.3)  # it waits as long as the launcher lives
    reaper._send("done\n")
    os.close(reaper._fd or -1)
    assert _exited(pid, 5)
    # Closed before any container ran (the launcher failed early): nothing to remove.
    early = Reaper.start()
    os.close(early._fd or -1)
    assert _exited(early.pid, 5)


def test_dead_engine_is_an_error_on_stderr(tmp_path: Path) -> None:
    """No engine needed: the launcher refuses before anything runs, host kernel included."""
    conn = tmp_path / "kernel-dead.json"
    conn.write_text(
        json.dumps(
            {"transport": "tcp", "ip": "127.0.0.1", "key": "k", "signature_scheme": "hmac-sha256"}
            | {
                p: 50000 + i
                for i, p in enumerate(
                    ("shell_port", "iopub_port", "stdin_port", "hb_port", "control_port")
                )
            }
        )
    )
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/dead.sock"}
    argv = [sys.executable, "-m", "nbcontainers.launch", "--kernel", "nbc-python"]
    argv += ["--image", "python", "-f", str(conn), "--", "python3", "-m", "ipykernel_launcher"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 3, done.stderr  # EngineUnavailable's exit code
    assert done.stderr.startswith("Error: ") and "dead.sock" in done.stderr
    assert "Traceback" not in done.stderr
