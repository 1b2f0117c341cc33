"""The remote-kernel pieces without an engine: Curve keys, the kernel command that copies a
read-only connection file, placement checks, pointing the manager at a node."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from nbcontainers.errors import ConfigError
from nbcontainers.kernels.connection import point_at
from nbcontainers.kernels.curve import clear_keys, ensure_keys, kernel_command, wants_curve
from nbcontainers.runtimes import Placement


def test_curve_is_on_for_remote_kernels_unless_turned_off() -> None:
    assert wants_curve("auto", remote=True) and not wants_curve("auto", remote=False)
    assert wants_curve("curve", remote=False)
    assert not wants_curve("none", remote=True)
    with pytest.raises(ConfigError, match="auto, curve, none"):
        wants_curve("tls", remote=True)


def test_keys_are_made_once_per_kernel_and_kept_across_restarts() -> None:
    km = SimpleNamespace(curve_publickey=None, curve_secretkey=None)
    ensure_keys(km)
    first = km.curve_publickey
    assert first is not None and len(first) == 40 and km.curve_secretkey != first  # Z85
    ensure_keys(km)
    assert km.curve_publickey == first
    clear_keys(km)
    assert km.curve_publickey is None and km.curve_secretkey is None


def test_the_kernel_gets_a_writable_copy_of_its_connection_file(tmp_path: Path) -> None:
    mounted = tmp_path / "ro.json"
    mounted.write_text(json.dumps({"key": "k"}))
    mounted.chmod(0o400)
    copy = tmp_path / "home" / "kernel.json"
    copy.parent.mkdir()
    argv = ["sh", "-c", 'cat "$0"; echo; stat -c %a "$0"', "{connection_file}"]
    done = subprocess.run(
        kernel_command(argv, str(mounted), str(copy)), capture_output=True, text=True
    )
    assert done.stdout.split() == ['{"key":', '"k"}', "600"]


def test_point_at_moves_the_manager_to_the_node() -> None:
    km = SimpleNamespace()
    info = {"ip": "127.0.0.1", "key": b"k", "shell_port": 1, "iopub_port": 2, "stdin_port": 3,
            "hb_port": 4, "control_port": 5}  # fmt: skip
    moved = point_at(km, info, "10.0.0.5", {1: 101, 4: 104})
    assert moved["ip"] == km.ip == "10.0.0.5"
    assert (moved["shell_port"], moved["hb_port"], moved["iopub_port"]) == (101, 104, 2)
    assert km.shell_port == 101 and info["ip"] == "127.0.0.1"  # the input is not changed


def test_placement_needs_a_cluster_runtime(fake_runtime: object) -> None:
    from nbcontainers.catalog.entries import load_catalog
    from nbcontainers.kernels.connection import PrivateDir
    from nbcontainers.kernels.identity import Host
    from nbcontainers.kernels.plan import KernelStart, LaunchConfig, plan_launch

    image = load_catalog(include_user=False)["python"]
    facts = fake_runtime.ping()  # type: ignore[attr-defined]
    kernel = KernelStart("k" * 32, ("python",), None, {}, PrivateDir(Path("/tmp/nbc-x")))
    with pytest.raises(ConfigError, match="runtime='swarm'"):
        plan_launch(LaunchConfig(placement=("node.labels.role==worker",), pip_settings=False),
                    kernel, image, facts, Host.current())  # fmt: skip
    # Swarm syntax no other engine understands is refused at the door, on every engine.
    with pytest.raises(ConfigError, match=r"node.role==worker.*node.labels.KEY==VALUE"):
        plan_launch(LaunchConfig(placement=("node.role==worker",), pip_settings=False),
                    kernel, image, facts, Host.current())  # fmt: skip
    remote = plan_launch(
        LaunchConfig(placement=("node.labels.role==worker",), pip_settings=False, transport="tcp"),
        KernelStart("k" * 32, ("python",), None, {}, PrivateDir(Path("/tmp/nbc-x")), ports=(7,)),
        image,
        facts.__class__(**{**facts.__dict__, "remote": True, "placement": True}),
        Host.current(),
    )
    spec = remote.container_spec()
    assert spec.placement == (Placement("worker", label="role"),)
    assert spec.ports == {7: ("0.0.0.0", 7)}  # the node publishes; Curve guards the port
