from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from nbcontainers.errors import GPUUnavailable
from nbcontainers.hostgpus import GPU, HostGPUs, _from_nvidia_smi, check_cuda, parse_gpu_request


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, (None, ())),
        ("all", (-1, ())),
        (2, (2, ())),
        ("2", (2, ())),
        ("none", (0, ())),
        ("0,1", (None, ("0", "1"))),
        ([0, 3], (None, ("0", "3"))),
        ("device=1", (None, ("1",))),
        ("GPU-abc", (None, ("GPU-abc",))),
    ],
)
def test_parse_gpu_request(value: object, expected: tuple[object, ...]) -> None:
    assert parse_gpu_request(value) == expected


def test_parse_gpu_request_rejects_bool() -> None:
    with pytest.raises(ValueError):
        parse_gpu_request(True)


def test_no_gpu_names_cpu_variant() -> None:
    with pytest.raises(GPUUnavailable) as info:
        check_cuda("pytorch-gpu", "12.8", HostGPUs(detail="no NVIDIA driver found"), "pytorch-cpu")
    msg = str(info.value)
    assert "needs an NVIDIA GPU" in msg and "pytorch-cpu" in msg and "nbc-pytorch-cpu" in msg


def test_old_driver_is_refused() -> None:
    host = HostGPUs(
        gpus=(GPU(0, "H100", "GPU-1", 80000),),
        driver_version="470.1",
        cuda_version="11.4",
        source="nvidia-smi",
    )
    with pytest.raises(GPUUnavailable, match=r"supports CUDA up to 11.4"):
        check_cuda("pytorch-gpu", "12.8", host, "pytorch-cpu")
    ok = HostGPUs(gpus=host.gpus, driver_version="570.1", cuda_version="12.8", source="nvml")
    check_cuda("pytorch-gpu", "12.8", ok, "pytorch-cpu")  # no error


def test_nvidia_smi_parsing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "nvidia-smi"
    fake.write_text(
        "#!/bin/sh\n"
        'case "$1" in --query-gpu*) '
        'echo "0, NVIDIA H100 80GB HBM3, GPU-1234, 81559, 570.86.15"; '
        'echo "1, NVIDIA H100 80GB HBM3, GPU-5678, 81559, 570.86.15";; '
        '*) echo "| NVIDIA-SMI 570.86.15   Driver Version: 570.86.15   CUDA Version: 12.8 |";; '
        "esac\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    found = _from_nvidia_smi(timeout=5)
    assert [g.uuid for g in found.gpus] == ["GPU-1234", "GPU-5678"]
    assert found.driver_version == "570.86.15" and found.cuda_version == "12.8"
