"""`nbcontainers doctor` against the in-memory engine: what it says about the engine, and that
every fix line is right on the host it is shown on (GPU or not, checkout or not). On a host with
several users it names each risk it can see: kernels on TCP (a real kernel is started for it),
a world-readable shared store, a runtime folder open to others, a kernel policy a user could
rewrite; and stays quiet where there is none."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.manager import KernelManager

from nbcontainers.catalog.entries import load_catalog
from nbcontainers.doctor import (
    Check,
    HostFacts,
    SecurityFacts,
    engine_fix,
    exit_code,
    run_checks,
)
from nbcontainers.doctor.security import security_checks, tcp_listeners
from nbcontainers.hostgpus import GPU, HostGPUs
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
    only, alone = run_checks(fake_runtime, security=ALONE)
    assert only.name == "engine" and only.status == "fail"
    assert alone.name == "other users" and alone.status == "skip"  # host checks still run


ALONE = SecurityFacts(uid=1000, others=[], runtime_dirs=[], stores=[])
DEBIAN = HostFacts(None, "Linux")
CHECKOUT = HostFacts(Path("/src/nbc"), "Linux")


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
    ("facts", "engine", "fix"),
    [
        (
            {"system": "Linux", "systemd": True, "installed": False},
            "docker",
            "sudo apt-get install docker.io && sudo systemctl start docker",
        ),
        ({"system": "Linux", "systemd": False, "installed": True}, "docker", "sudo dockerd &"),
        (
            {"system": "Darwin", "systemd": False, "installed": False},
            "docker",
            "start Docker Desktop",
        ),
        (
            {"systemd": True, "installed": False},
            "podman",
            "sudo apt-get install podman uidmap slirp4netns catatonit",
        ),
        ({"systemd": True, "installed": True}, "podman", "systemctl --user enable --now"),
    ],
)
def test_the_engine_fix_fits_the_host(facts: dict[str, Any], engine: str, fix: str) -> None:
    """Each engine's own words, from its runtime package, for any host."""
    from nbcontainers.runtimes.docker import fixes as docker_fixes
    from nbcontainers.runtimes.podman import service as podman_service

    if engine == "docker":
        said = docker_fixes.start_fix(rootless=False, **facts)
    else:
        said = podman_service.start_fix(**facts)
    assert said.startswith(fix)


def test_doctor_asks_the_runtime_that_knows_the_engine() -> None:
    from nbcontainers.runtimes.docker import fixes as docker_fixes
    from nbcontainers.runtimes.docker.runtime import DockerRuntime
    from nbcontainers.runtimes.podman import service as podman_service
    from nbcontainers.runtimes.podman.runtime import PodmanRuntime

    docker, podman = DockerRuntime(), PodmanRuntime(base_url="unix:///nonexistent.sock")
    assert engine_fix(docker, "docker", CHECKOUT).startswith("make -C /src/nbc engine")
    mac = HostFacts(Path("/src/nbc"), "Darwin")  # no Debian script there: the runtime's fix
    assert engine_fix(docker, "docker", mac) == docker_fixes.start_fix_here()
    assert engine_fix(docker, "docker", DEBIAN) == docker_fixes.start_fix_here()
    rootless = engine_fix(docker, "docker", CHECKOUT, "unix:///run/user/1000/docker.sock")
    assert rootless in ("systemctl --user start docker", "dockerd-rootless.sh &")
    assert engine_fix(podman, "podman", CHECKOUT) == podman_service.start_fix_here()
    assert engine_fix(FakeRuntime(), "fake", DEBIAN).startswith("start the fake engine")


def test_engine_down_outside_a_checkout(fake_runtime: FakeRuntime) -> None:
    fake_runtime.available = False
    only, _ = run_checks(fake_runtime, host=DEBIAN, security=ALONE)
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


# -- a host with several users --------------------------------------------------------------

NOBODY = 65534


@pytest.fixture
def host(tmp_path: Path) -> SecurityFacts:
    """A multi-user host with nothing wrong: a private runtime folder, a root-owned policy."""
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    policy_dir = tmp_path / "etc"
    policy_dir.mkdir(mode=0o755)
    (policy_dir / "policy.json").write_text("{}")
    (policy_dir / "policy.json").chmod(0o644)
    return SecurityFacts(
        uid=0, others=["alice", "bob"], runtime_dirs=[runtime], stores=[],
        policy=policy_dir / "policy.json",
    )  # fmt: skip


def test_a_host_with_one_user_skips_them() -> None:
    (only,) = security_checks(SecurityFacts(uid=1000, others=[], runtime_dirs=[], stores=[]))
    assert only.status == "skip" and "no other login users" in only.detail


def test_a_sound_multi_user_host_is_ok(host: SecurityFacts) -> None:
    checks = _by_name(security_checks(host))
    assert checks["other users"].detail.startswith("2 other login user(s)")
    assert checks["kernel transport"].status == "ok"
    assert checks["kernel policy"].status == "ok"
    assert checks["shared store"].status == "skip"


def _kernel(runtime: Path, transport: str) -> KernelManager:
    km = KernelManager(
        kernel_name="python3", transport=transport,
        connection_file=str(runtime / f"kernel-{transport}.json"),
    )  # fmt: skip
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)  # its sockets are bound from here on
    finally:
        kc.stop_channels()
    return km


def test_a_running_tcp_kernel_is_named(host: SecurityFacts) -> None:
    (runtime,) = host.runtime_dirs
    km = _kernel(runtime, "tcp")
    try:
        checks = _by_name(security_checks(replace(host, listening=tcp_listeners())))
    finally:
        km.shutdown_kernel(now=True)
    found = checks["kernel transport"]
    assert found.status == "warn", found
    assert f"kernel-tcp.json (iopub {km.iopub_port})" in found.detail
    assert "every user of this host can subscribe" in found.detail
    assert "c.KernelManager.transport = 'ipc'" in found.fix
    # The same file once its kernel is gone is stale, not a risk.
    checks = _by_name(security_checks(replace(host, listening=tcp_listeners())))
    assert checks["kernel transport"].status == "ok"


def test_an_ipc_kernel_in_a_private_folder_is_fine_and_in_an_open_one_is_not(
    host: SecurityFacts,
) -> None:
    (runtime,) = host.runtime_dirs
    km = _kernel(runtime, "ipc")
    try:
        assert _by_name(security_checks(host))["kernel transport"].status == "ok"
        runtime.chmod(0o755)
        found = _by_name(security_checks(host))["kernel transport"]
    finally:
        km.shutdown_kernel(now=True)
    assert found.status == "warn" and str(runtime) in found.detail
    assert found.fix == f"chmod 700 {runtime}"


@pytest.fixture
def open_folder() -> Iterator[Path]:
    """A folder every user can reach (pytest's own temporary folders are 0700)."""
    folder = Path(tempfile.mkdtemp(prefix="nbc-doctor-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder)


def test_a_world_readable_store_is_named(host: SecurityFacts, open_folder: Path) -> None:
    store = open_folder / "storage"
    (store / "vfs").mkdir(parents=True)
    store.chmod(0o750)  # what hub setup makes: root:<hub users' group>
    (store / "vfs").chmod(0o755)  # open below, but nobody else gets past the store itself
    assert _by_name(security_checks(replace(host, stores=[store])))["shared store"].status == "ok"
    store.chmod(0o711)
    found = _by_name(security_checks(replace(host, stores=[store])))["shared store"]
    assert found.status == "warn" and f"{store / 'vfs'} (755)" in found.detail
    store.chmod(0o755)
    found = _by_name(security_checks(replace(host, stores=[store])))["shared store"]
    assert found.status == "warn" and f"{store} (755)" in found.detail
    assert "hub setup" in found.fix


def test_a_policy_a_user_could_rewrite_is_named(host: SecurityFacts) -> None:
    assert host.policy is not None
    os.chown(host.policy, NOBODY, -1)
    found = _by_name(security_checks(host))["kernel policy"]
    assert found.status == "warn" and f"belongs to uid {NOBODY}" in found.detail
    os.chown(host.policy, 0, -1)
    host.policy.parent.chmod(0o777)
    found = _by_name(security_checks(host))["kernel policy"]
    assert found.status == "warn" and "writable by others (777)" in found.detail
    assert "sudo chown root:root" in found.fix


def test_a_missing_policy_is_named(host: SecurityFacts, tmp_path: Path) -> None:
    found = _by_name(security_checks(replace(host, policy=tmp_path / "none.json")))
    assert found["kernel policy"].status == "warn"
    assert "nothing caps" in found["kernel policy"].detail


def test_a_users_runtime_folder_open_to_others_is_named(
    host: SecurityFacts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "xdg"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(folder))
    monkeypatch.setattr("os.getuid", lambda: 0)
    found = _by_name(security_checks(replace(host, uid=os.getuid() or 1)))["runtime folder"]
    assert found.status == "warn" and "chmod 700" in found.detail


def test_root_sees_each_users_unsafe_runtime_folder(host: SecurityFacts, tmp_path: Path) -> None:
    import pwd

    def user(name: str, uid: int, home: Path) -> pwd.struct_passwd:
        return pwd.struct_passwd((name, "x", uid, uid, "", str(home), "/bin/sh"))

    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    os.chown(home, 4242421, 4242421)
    fine = user("fine", 4242421, home)  # no /run folder: one is made in its own home
    ghost = user("ghost", 4242422, tmp_path / "none")
    shared = user("shared", 4242423, tmp_path)  # a home that is root's, not the user's
    found = _by_name(security_checks(replace(host, run_users=[fine])))["runtime folders"]
    assert found.status == "ok"
    found = _by_name(security_checks(replace(host, run_users=[fine, ghost, shared])))
    detail = found["runtime folders"].detail
    assert found["runtime folders"].status == "warn" and "fine" not in detail
    assert f"ghost: no /run/nbcontainers/4242422 and no home folder {tmp_path / 'none'}" in detail
    assert f"shared: no /run/nbcontainers/4242423, and the home {tmp_path} is not" in detail
    assert found["runtime folders"].fix.startswith("sudo nbcontainers hub setup")


def test_connection_files_that_are_not_json_are_ignored(host: SecurityFacts) -> None:
    (runtime,) = host.runtime_dirs
    (runtime / "kernel-x.json").write_text("not json")
    (runtime / "kernel-y.json").write_text(json.dumps([1]))
    assert _by_name(security_checks(host))["kernel transport"].status == "ok"


def _spec_dir(tmp_path: Path, mode: int = 0o666) -> Path:
    """A CDI spec whose two GPU nodes are plain files standing in for device nodes."""
    import json

    for name in ("nvidia0", "nvidia1"):
        (tmp_path / name).touch()
        (tmp_path / name).chmod(mode)
    node = lambda n: {"path": f"/dev/{n}", "hostPath": str(tmp_path / n)}  # noqa: E731
    spec = {
        "kind": "nvidia.com/gpu",
        "devices": [
            {"name": "0", "containerEdits": {"deviceNodes": [node("nvidia0")]}},
            {"name": "1", "containerEdits": {"deviceNodes": [node("nvidia1")]}},
        ],
        "containerEdits": {"mounts": [{"hostPath": "/x/libcuda.so.550.54.15",
                                       "containerPath": "/x/libcuda.so.550.54.15"}]},
    }  # fmt: skip
    (tmp_path / "cdi").mkdir()
    (tmp_path / "cdi" / "nvidia.json").write_text(json.dumps(spec))
    return tmp_path / "cdi"


def test_gpus_known_from_the_cdi_spec_and_who_gives_them(
    fake_runtime: FakeRuntime, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """No NVML, no nvidia-smi: the spec's devices and driver file say what is here, and doctor
    says that nbcontainers hands them out (the fake engine has no NVIDIA runtime)."""
    _gpus(monkeypatch, HostGPUs(detail="no NVIDIA driver found"))
    monkeypatch.setenv("NBCONTAINERS_CDI_DIRS", str(_spec_dir(tmp_path)))
    checks = _by_name(run_checks(fake_runtime, host=DEBIAN, security=ALONE))
    assert checks["gpus"].detail.startswith("0: NVIDIA GPU, 1: NVIDIA GPU; driver 550.54.15, CUDA")
    devices = checks["gpu devices"]
    assert devices.status == "ok" and "GPUs 0, 1" in devices.detail
    assert "by nbcontainers, from the CDI spec" in devices.detail


def test_a_rootless_user_who_cannot_open_the_nodes_gets_the_usermod_line(
    fake_runtime: FakeRuntime, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import dataclasses
    import grp
    import os
    import pwd

    _gpus(monkeypatch, HostGPUs(detail="no NVIDIA driver found"))
    monkeypatch.setenv("NBCONTAINERS_CDI_DIRS", str(_spec_dir(tmp_path, mode=0o660)))
    nobody = pwd.getpwnam("nobody")
    monkeypatch.setattr("os.getuid", lambda: nobody.pw_uid)
    facts = dataclasses.replace(fake_runtime.ping(), rootless=True)
    monkeypatch.setattr(fake_runtime, "ping", lambda: facts)
    checks = run_checks(fake_runtime, host=DEBIAN, security=ALONE)
    access = [c for c in checks if c.name == "gpu access"]
    group = grp.getgrgid(os.stat(tmp_path / "nvidia0").st_gid).gr_name
    assert [c.fix for c in access] == [f"sudo usermod -aG {group} nobody  # then log in again"] * 2
    assert f"can't open {tmp_path}/nvidia0" in access[0].detail
