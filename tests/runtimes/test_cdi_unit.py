"""CDI specs read and applied by nbcontainers (runtimes/cdi.py): exactly the requested GPUs,
the common edits, nvidia-ctk's hooks honoured or refused by name, and a spec made from the
host's /dev/nvidia* when none exists."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from nbcontainers.errors import ConfigError, GPUUnavailable
from nbcontainers.runtimes import cdi
from nbcontainers.runtimes.base import ContainerSpec, GPURequest

SPEC = """
cdiVersion: 0.5.0
kind: nvidia.com/gpu
devices:
- name: "0"
  containerEdits: {deviceNodes: [{path: /dev/nvidia0}]}
- name: "1"
  containerEdits: {deviceNodes: [{path: /dev/nvidia1}]}
- name: GPU-6d0e
  containerEdits: {deviceNodes: [{path: /dev/nvidia1}]}
containerEdits:
  env: [NVIDIA_VISIBLE_DEVICES=void]
  deviceNodes: [{path: /dev/nvidiactl}]
  mounts:
  - hostPath: /usr/lib/x86_64-linux-gnu/libcuda.so.550
    containerPath: /usr/lib/x86_64-linux-gnu/libcuda.so.550
    options: [ro, bind]
  hooks:
  - hookName: createContainer
    path: /usr/bin/nvidia-ctk
    args: [nvidia-ctk, hook, chmod, --mode, "755", --path, /dev/dri]
"""


@pytest.fixture
def spec(tmp_path: Path) -> cdi.GPUSpec:
    (tmp_path / "other.yaml").write_text("cdiVersion: 0.5.0\nkind: vendor.com/fpga\ndevices: []\n")
    (tmp_path / "nvidia.yaml").write_text(SPEC)
    found = cdi.find_spec([tmp_path])
    assert found is not None and found.path.name == "nvidia.yaml"
    return found


def test_an_id_gets_its_node_and_the_common_edits_only(spec: cdi.GPUSpec) -> None:
    edits = cdi.select(spec, GPURequest(device_ids=("1",)))
    assert edits.devices == ("/dev/nvidiactl:/dev/nvidiactl:rwm", "/dev/nvidia1:/dev/nvidia1:rwm")
    assert [m.target for m in edits.mounts] == ["/usr/lib/x86_64-linux-gnu/libcuda.so.550"]
    assert all(m.read_only for m in edits.mounts)
    assert edits.env == {"NVIDIA_VISIBLE_DEVICES": "void"}
    # A UUID alias and the fully qualified CDI name reach the same device.
    assert cdi.select(spec, GPURequest(device_ids=("GPU-6d0e",))).devices == edits.devices
    qualified = cdi.select(spec, GPURequest(device_ids=("nvidia.com/gpu=1",)))
    assert qualified.devices == edits.devices


def test_counts_pick_in_index_order_and_never_more_than_there_are(spec: cdi.GPUSpec) -> None:
    assert "/dev/nvidia0:/dev/nvidia0:rwm" in cdi.select(spec, GPURequest(count=1)).devices
    assert "/dev/nvidia1:/dev/nvidia1:rwm" not in cdi.select(spec, GPURequest(count=1)).devices
    assert len(cdi.select(spec, GPURequest(count=-1)).devices) == 3
    with pytest.raises(GPUUnavailable, match=r"3 GPUs were asked for.*lists 2"):
        cdi.select(spec, GPURequest(count=3))
    with pytest.raises(GPUUnavailable, match=r"GPU '2' is not in .*it has 0, 1"):
        cdi.select(spec, GPURequest(device_ids=("2",)))


def test_an_unknown_hook_is_refused_not_dropped(tmp_path: Path) -> None:
    (tmp_path / "nvidia.yaml").write_text(
        SPEC.replace("hook, chmod", "hook, enable-cuda-compat").replace('--mode, "755", ', "")
    )
    found = cdi.find_spec([tmp_path])
    assert found is not None
    with pytest.raises(ConfigError, match=r"enable-cuda-compat.*cannot run.*Podman 5\.4"):
        cdi.select(found, GPURequest(count=1))


def test_a_broken_spec_names_its_file(tmp_path: Path) -> None:
    (tmp_path / "nvidia.yaml").write_text("kind: [unclosed\n")
    with pytest.raises(ConfigError, match=r"nvidia\.yaml is not valid YAML"):
        cdi.find_spec([tmp_path])
    (tmp_path / "nvidia.yaml").write_text("kind: nvidia.com/gpu\ndevices: [{path: x}]\n")
    with pytest.raises(ConfigError, match="a device without a name"):
        cdi.find_spec([tmp_path])


def test_applying_spends_the_request_and_wraps_the_start_for_links(spec: cdi.GPUSpec) -> None:
    edits = cdi.Edits(
        devices=("/dev/nvidia1:/dev/nvidia1:rwm",),
        env={"LD_LIBRARY_PATH": cdi.LINK_DIR},
        start=(f"mkdir -p {cdi.LINK_DIR}",),
    )
    base = ContainerSpec(image="i", command=("python", "-m", "k"), gpus=GPURequest(count=1),
                         env={"A": "1"})  # fmt: skip
    applied = cdi.apply_edits(base, edits, rootless=False)
    assert applied.gpus is None and applied.devices == edits.devices
    assert applied.env == {"A": "1", "LD_LIBRARY_PATH": cdi.LINK_DIR}
    assert applied.command[:2] == ("/bin/sh", "-c") and applied.command[-3:] == base.command
    assert 'exec "$@"' in applied.command[2]


def test_a_spec_is_made_from_the_host_when_none_exists(tmp_path: Path) -> None:
    dev, lib = tmp_path / "dev", tmp_path / "lib"
    dev.mkdir()
    lib.mkdir()
    assert cdi.host_spec(dev, [str(lib)]) is None  # no GPU: nothing to make
    for name in ("nvidia0", "nvidia1", "nvidia10", "nvidiactl", "nvidia-uvm", "nvidia-caps"):
        (dev / name).touch()
    (lib / "libcuda.so.550.54").write_text("x")
    (lib / "libcuda.so.1").symlink_to("libcuda.so.550.54")  # links come from the hook
    made = cdi.host_spec(dev, [str(lib)])
    assert made is not None and made.names() == ["0", "1", "10"]
    edits = cdi.select(made, GPURequest(device_ids=("10",)))
    assert f"{dev}/nvidia10:/dev/nvidia10:rwm" in edits.devices
    assert f"{dev}/nvidia0:/dev/nvidia0:rwm" not in edits.devices
    assert f"{dev}/nvidiactl:/dev/nvidiactl:rwm" in edits.devices
    assert [m.source for m in edits.mounts][:1] == [str(lib / "libcuda.so.550.54")]
    assert edits.env["LD_LIBRARY_PATH"] == str(lib)


def test_the_nodes_a_user_cannot_open_are_named_with_their_group(tmp_path: Path) -> None:
    import grp
    import os

    for name, mode in (("nvidia0", 0o660), ("nvidia1", 0o666), ("nvidiactl", 0o600)):
        (tmp_path / name).touch()
        (tmp_path / name).chmod(mode)
    node = lambda n: {"path": f"/dev/{n}", "hostPath": str(tmp_path / n)}  # noqa: E731
    spec = cdi.GPUSpec(
        path=tmp_path / "spec",
        devices={"0": {"deviceNodes": [node("nvidia0")]}, "1": {"deviceNodes": [node("nvidia1")]}},
        common={"deviceNodes": [node("nvidiactl")]},
    )
    group = grp.getgrgid(os.stat(tmp_path / "nvidia0").st_gid).gr_name
    assert cdi.unopenable("nobody", spec) == {
        str(tmp_path / "nvidia0"): group,
        str(tmp_path / "nvidiactl"): group,
    }


def test_the_spec_libraries_come_before_the_images_own_not_instead() -> None:
    # CUDA images name their libraries in LD_LIBRARY_PATH; a container's variable replaces the
    # image's, so unchanged code dropped them (the GPU libraries found, the image's not).
    edits = cdi.Edits(env={"LD_LIBRARY_PATH": cdi.LINK_DIR}, start=(f"mkdir -p {cdi.LINK_DIR}",))
    image = cdi.ImageConfig(env={"LD_LIBRARY_PATH": "/usr/local/cuda/lib64"}, command=("serve",))
    base = ContainerSpec(image="i", command=("python",), gpus=GPURequest(count=1))
    applied = cdi.apply_edits(base, edits, rootless=False, image=image)
    assert applied.env["LD_LIBRARY_PATH"] == f"{cdi.LINK_DIR}:/usr/local/cuda/lib64"
    mine = replace(base, env={"LD_LIBRARY_PATH": "/opt/mine"})  # the caller's own wins over it
    assert cdi.apply_edits(mine, edits, False, image).env["LD_LIBRARY_PATH"] == (
        f"{cdi.LINK_DIR}:/opt/mine"
    )
    bare = cdi.apply_edits(base, edits, rootless=False)  # an image that sets none
    assert bare.env["LD_LIBRARY_PATH"] == cdi.LINK_DIR


def test_a_container_on_the_images_command_still_runs_the_start_lines() -> None:
    # Unchanged code skipped the links (and so the libraries behind them) for a container
    # started without a command of its own.
    edits = cdi.Edits(env={"LD_LIBRARY_PATH": cdi.LINK_DIR}, start=(f"mkdir -p {cdi.LINK_DIR}",))
    base = ContainerSpec(image="i", command=(), gpus=GPURequest(count=1))
    applied = cdi.apply_edits(base, edits, False, cdi.ImageConfig(command=("serve", "--port=8")))
    assert applied.command[:2] == ("/bin/sh", "-c") and applied.command[-2:] == (
        "serve",
        "--port=8",
    )
    no_start = cdi.apply_edits(base, cdi.Edits(), False, cdi.ImageConfig(command=("serve",)))
    assert no_start.command == ()  # nothing to run first: the engine runs the image's command
