"""GPUs from the host's CDI spec, applied by nbcontainers on engines that can't (rootless
Podman 4.x) or won't without the NVIDIA runtime (Docker): a fake GPU host (character device
nodes with NVIDIA's major number, a stub driver library, a CDI spec like nvidia-ctk's), and a
real container on each engine that asked for GPU 1 sees exactly ``/dev/nvidia1`` and the
control nodes, the library at the spec's path, the spec's environment and its hooks' effect.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from nbcontainers.errors import GPUUnavailable
from nbcontainers.labels import KERNEL_ID
from nbcontainers.runtimes import cdi
from nbcontainers.runtimes.base import BuildRequest, ContainerRuntime, ContainerSpec, GPURequest

NVIDIA_MAJOR = 195  # the driver's character devices: nvidia0.. and nvidiactl (minor 255)
LIBCUDA = "libcuda.so.550.54.15"
LIB = "/usr/lib/x86_64-linux-gnu"
LINK = f"{LIB}/{LIBCUDA}::{LIB}/libcuda.so.1"  # create-symlinks: target::link


def _spec(root: Path) -> dict[str, object]:
    dev = root / "dev"
    node = lambda name: {"path": f"/dev/{name}", "hostPath": str(dev / name)}  # noqa: E731
    return {
        "cdiVersion": "0.5.0",
        "kind": "nvidia.com/gpu",
        "devices": [
            {"name": "0", "containerEdits": {"deviceNodes": [node("nvidia0")]}},
            {"name": "1", "containerEdits": {"deviceNodes": [node("nvidia1")]}},
            {"name": "GPU-fake-1", "containerEdits": {"deviceNodes": [node("nvidia1")]}},
            {"name": "all", "containerEdits": {"deviceNodes": [node("nvidia0"), node("nvidia1")]}},
        ],
        "containerEdits": {
            "env": ["NVIDIA_VISIBLE_DEVICES=void", "NBC_FAKE_SPEC=applied"],
            "deviceNodes": [node("nvidiactl"), node("nvidia-uvm")],
            "mounts": [
                {
                    "hostPath": str(root / "lib" / LIBCUDA),
                    "containerPath": f"{LIB}/{LIBCUDA}",
                    "options": ["ro", "nosuid", "nodev", "bind"],
                }
            ],
            "hooks": [
                {
                    "hookName": "createContainer",
                    "path": "/usr/bin/nvidia-ctk",
                    "args": ["nvidia-ctk", "hook", "update-ldcache", "--folder", LIB],
                },
                {
                    "hookName": "createContainer",
                    "path": "/usr/bin/nvidia-ctk",
                    "args": ["nvidia-ctk", "hook", "create-symlinks", "--link", LINK],
                },
            ],
        },
    }


@pytest.fixture
def fake_gpu_host(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Device nodes made as root (removed after), a stub libcuda, and the spec, in a folder
    every user can read (rootless Podman opens them as its user)."""
    if os.geteuid() != 0:
        pytest.skip("making device nodes needs root")
    root = Path(tempfile.mkdtemp(prefix="nbc-fakegpu-", dir="/tmp"))
    root.chmod(0o755)
    (root / "dev").mkdir(mode=0o755)
    for name, minor in (("nvidia0", 0), ("nvidia1", 1), ("nvidiactl", 255), ("nvidia-uvm", 254)):
        path = root / "dev" / name
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(NVIDIA_MAJOR, minor))
        path.chmod(0o666)
    (root / "lib").mkdir(mode=0o755)
    (root / "lib" / LIBCUDA).write_text("stub driver library\n")
    (root / "lib" / LIBCUDA).chmod(0o644)
    (root / "cdi").mkdir(mode=0o755)
    (root / "cdi" / "nvidia.json").write_text(json.dumps(_spec(root)))
    monkeypatch.setenv("NBCONTAINERS_CDI_DIRS", str(root / "cdi"))
    yield root
    shutil.rmtree(root)


def _report(runtime: ContainerRuntime, image: str, gpus: GPURequest) -> str:
    script = (
        "ls /dev | grep -E '^nvidia' | sort | tr '\\n' ' '; echo; "
        f"echo LD=$LD_LIBRARY_PATH; echo FAKE=$NBC_FAKE_SPEC; cat {LIB}/{LIBCUDA}; "
        f"readlink {cdi.LINK_DIR}/libcuda.so.1"
    )
    spec = ContainerSpec(
        image=image,
        command=("sh", "-c", script),
        labels={KERNEL_ID: f"gpu-{uuid.uuid4().hex[:8]}"},
        gpus=gpus,
    )
    cid = runtime.run(spec)
    try:
        assert runtime.wait(cid, timeout=60) == 0, runtime.logs(cid)
        return runtime.logs(cid)
    finally:
        runtime.remove(cid)


@pytest.fixture(params=["docker", "podman"])
def engine(request: pytest.FixtureRequest) -> tuple[ContainerRuntime, str]:
    if request.param == "podman":
        return request.getfixturevalue("podman_runtime"), "nbcontainers/base:bookworm"
    from nbcontainers.catalog.entries import load_catalog

    image = load_catalog()[request.getfixturevalue("python_image")].ref
    return request.getfixturevalue("runtime"), image


@pytest.mark.docker
def test_gpu_1_sees_exactly_its_node_the_libraries_and_the_specs_environment(
    engine: tuple[ContainerRuntime, str], fake_gpu_host: Path
) -> None:
    runtime, image = engine
    assert "nvidia" not in runtime.ping().runtimes  # applied by nbcontainers, not a runtime
    lines = _report(runtime, image, GPURequest(device_ids=("1",))).splitlines()
    assert lines[0].split() == ["nvidia-uvm", "nvidia1", "nvidiactl"]  # never nvidia0
    assert lines[1] == f"LD={cdi.LINK_DIR}:{LIB}"  # the hooks' linker folders
    assert lines[2] == "FAKE=applied"
    assert lines[3] == "stub driver library"  # the library at the spec's path
    assert lines[4] == f"{LIB}/{LIBCUDA}"  # create-symlinks, made at the kernel's start


@pytest.mark.docker
def test_the_images_own_library_path_is_kept_behind_the_gpus(
    engine: tuple[ContainerRuntime, str], fake_gpu_host: Path, tmp_path: Path
) -> None:
    # CUDA images set LD_LIBRARY_PATH; unchanged code replaced it with the spec's folders.
    runtime, image = engine
    (tmp_path / "Dockerfile").write_text(f"FROM {image}\nENV LD_LIBRARY_PATH=/opt/image-libs\n")
    tag = f"nbc-test-ldpath:{uuid.uuid4().hex[:8]}"
    runtime.build(BuildRequest(context=tmp_path, tag=tag))
    try:
        lines = _report(runtime, tag, GPURequest(device_ids=("1",))).splitlines()
    finally:
        runtime.remove_image(tag)
    assert lines[1] == f"LD={cdi.LINK_DIR}:{LIB}:/opt/image-libs"


@pytest.mark.docker
def test_a_count_and_all_pick_in_index_order(
    engine: tuple[ContainerRuntime, str], fake_gpu_host: Path
) -> None:
    runtime, image = engine
    one = _report(runtime, image, GPURequest(count=1)).splitlines()[0].split()
    assert one == ["nvidia-uvm", "nvidia0", "nvidiactl"]
    every = _report(runtime, image, GPURequest(count=-1)).splitlines()[0].split()
    assert every == ["nvidia-uvm", "nvidia0", "nvidia1", "nvidiactl"]


@pytest.mark.docker
def test_a_gpu_the_spec_lacks_is_refused_before_anything_starts(
    engine: tuple[ContainerRuntime, str], fake_gpu_host: Path
) -> None:
    runtime, image = engine
    spec = ContainerSpec(image=image, command=("true",), gpus=GPURequest(device_ids=("7",)))
    with pytest.raises(GPUUnavailable, match=r"GPU '7' is not in this host's CDI spec"):
        runtime.run(spec)
    with pytest.raises(GPUUnavailable, match=r"3 GPUs were asked for"):
        runtime.run(ContainerSpec(image=image, command=("true",), gpus=GPURequest(count=3)))


def test_a_user_outside_the_gpu_group_gets_the_fix(fake_gpu_host: Path) -> None:
    """A rootless engine opens the nodes as its user: one the user can't open is refused, by
    name, with the `usermod` line, as that user's own nbcontainers would say it."""
    user = pwd.getpwnam("nobody")
    (fake_gpu_host / "dev" / "nvidia1").chmod(0o660)  # root's group only, as on many hosts
    code = (
        "from nbcontainers.runtimes import cdi\n"
        "from nbcontainers.runtimes.base import ContainerSpec, GPURequest\n"
        "edits = cdi.select(cdi.find_spec(), GPURequest(device_ids=('1',)))\n"
        "spec = ContainerSpec(image='x', command=(), gpus=GPURequest())\n"
        "cdi.apply_edits(spec, edits, rootless=True)\n"
    )
    done = subprocess.run(
        ["runuser", "-u", user.pw_name, "--", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd="/",
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
        check=False,
    )
    assert done.returncode != 0
    assert "GPUUnavailable" in done.stderr
    assert f"can't open the GPU device {fake_gpu_host}/dev/nvidia1 (group root" in done.stderr
    assert "sudo usermod -aG root nobody" in done.stderr


@pytest.mark.docker
def test_a_kernel_asking_for_gpu_1_sees_only_it(
    python_image: str, tmp_path: Path, fake_gpu_host: Path
) -> None:
    """Through the provisioner, as a notebook gets it: the host's GPUs known from the spec
    (no NVML, no nvidia-smi here), the kernel started with ``gpus="device=1"``."""
    from ..drive import container_kernel, run

    with container_kernel(tmp_path, gpus="device=1") as (_, kc):
        out, reply = run(
            kc,
            "import os; print(sorted(n for n in os.listdir('/dev') if n.startswith('nvidia')),"
            " os.environ.get('NBC_FAKE_SPEC'), os.environ.get('NVIDIA_VISIBLE_DEVICES'))",
        )
    assert reply["status"] == "ok", out
    assert out.strip() == "['nvidia-uvm', 'nvidia1', 'nvidiactl'] applied void"
