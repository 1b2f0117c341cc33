"""Host GPU facts (NVML, else nvidia-smi) and the driver-vs-image CUDA check."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass

from .errors import GPUUnavailable

__all__ = [
    "GPU",
    "HostGPUs",
    "check_cuda",
    "cuda_for_driver",
    "detect_gpus",
    "parse_gpu_request",
]

# The newest CUDA each driver branch supports (what nvidia-smi prints for it), newest first:
# for a host known by its device nodes and driver files only, without NVML or nvidia-smi.
_DRIVER_CUDA = (
    (580, "13.0"), (575, "12.9"), (570, "12.8"), (565, "12.7"), (560, "12.6"), (555, "12.5"),
    (550, "12.4"), (545, "12.3"), (535, "12.2"), (530, "12.1"), (525, "12.0"), (520, "11.8"),
    (515, "11.7"), (510, "11.6"), (495, "11.5"), (470, "11.4"), (465, "11.3"), (460, "11.2"),
    (455, "11.1"), (450, "11.0"),
)  # fmt: skip


@dataclass(frozen=True)
class GPU:
    index: int
    name: str
    uuid: str
    memory_mib: int


@dataclass(frozen=True)
class HostGPUs:
    """What the host offers: its NVIDIA GPUs, driver version and the newest CUDA it supports."""

    gpus: tuple[GPU, ...] = ()
    driver_version: str | None = None
    cuda_version: str | None = None
    source: str = "none"  # "nvml", "nvidia-smi" or "none"
    detail: str = ""  # why nothing was found, when nothing was

    def __bool__(self) -> bool:
        return bool(self.gpus)


def _from_nvml() -> HostGPUs | None:
    # pynvml is optional (the `gpu` extra): without it nvidia-smi answers the same questions,
    # one process start slower. None (not an empty result) tells the caller to try that.
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
        return HostGPUs(source="none", detail=f"NVML: {exc}")
    try:
        driver = pynvml.nvmlSystemGetDriverVersion()
        cuda = pynvml.nvmlSystemGetCudaDriverVersion_v2()
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
            gpus.append(
                GPU(
                    index=i,
                    name=_text(pynvml.nvmlDeviceGetName(handle)),
                    uuid=_text(pynvml.nvmlDeviceGetUUID(handle)),
                    memory_mib=int(mem.total) // (1024 * 1024),
                )
            )
        return HostGPUs(
            gpus=tuple(gpus),
            driver_version=_text(driver),
            # NVML encodes CUDA 12.4 as 12040.
            cuda_version=f"{cuda // 1000}.{(cuda % 1000) // 10}",
            source="nvml",
        )
    finally:
        pynvml.nvmlShutdown()


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _from_nvidia_smi(timeout: float) -> HostGPUs:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return HostGPUs(source="none", detail="no NVIDIA driver found (no NVML, no nvidia-smi)")
    try:
        query = subprocess.run(
            [
                exe,
                "--query-gpu=index,name,uuid,memory.total,driver_version",
                "--format=csv,noheader,nounits",
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        # The highest CUDA the driver supports is printed only in the plain table's header;
        # no --query-gpu field gives it.
        header = subprocess.run([exe], capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return HostGPUs(source="none", detail=f"nvidia-smi failed: {exc}")
    if query.returncode != 0:
        reason = (query.stderr or query.stdout).strip().splitlines()
        return HostGPUs(source="none", detail=f"nvidia-smi: {reason[0] if reason else 'failed'}")
    gpus, driver = [], None
    for line in query.stdout.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 5:
            continue  # a warning line between rows (seen with MIG and persistence mode notes)
        gpus.append(GPU(int(parts[0]), parts[1], parts[2], int(float(parts[3]))))
        driver = parts[4]
    match = re.search(r"CUDA Version:\s*([\d.]+)", header.stdout)
    return HostGPUs(
        gpus=tuple(gpus),
        driver_version=driver,
        cuda_version=match.group(1) if match else None,
        source="nvidia-smi",
    )


def detect_gpus(timeout: float = 5.0) -> HostGPUs:
    """Find the host's NVIDIA GPUs; never raises, an empty result says why in ``detail``."""
    found = _from_nvml()
    if found is not None and found.gpus:
        return found
    # NVML may fail where nvidia-smi works (a pynvml too old for the driver); when both find
    # nothing, NVML's reason is the more precise one to show.
    smi = _from_nvidia_smi(timeout)
    if smi.gpus or found is None:
        return smi
    return found


def cuda_for_driver(driver: str) -> str | None:
    """The newest CUDA the NVIDIA driver ``driver`` (e.g. ``550.54.15``) supports, or None."""
    match = re.match(r"(\d+)", driver)
    if not match:
        return None
    branch = int(match.group(1))
    return next((cuda for first, cuda in _DRIVER_CUDA if branch >= first), None)


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:2])


def check_cuda(
    image_name: str, image_cuda: str | None, host: HostGPUs, cpu_variant: str | None
) -> None:
    """Raise :class:`GPUUnavailable` unless the host can run a CUDA ``image_cuda`` image."""
    alternative = (
        f" Use the CPU image instead: `%container use {cpu_variant}` or kernel 'nbc-{cpu_variant}'."
        if cpu_variant
        else ""
    )
    if not host.gpus:
        raise GPUUnavailable(
            f"Image {image_name!r} needs an NVIDIA GPU, but this host has none "
            f"({host.detail or 'none detected'}).{alternative}"
        )
    if (
        image_cuda
        and host.cuda_version
        and (_version_tuple(host.cuda_version) < _version_tuple(image_cuda))
    ):
        raise GPUUnavailable(
            f"Image {image_name!r} is built for CUDA {image_cuda}, but the host's NVIDIA driver "
            f"{host.driver_version} supports CUDA up to {host.cuda_version}. Upgrade the driver "
            f"to one for CUDA {image_cuda} or newer.{alternative}"
        )


def parse_gpu_request(value: object) -> tuple[int | None, tuple[str, ...]]:
    """Turn the ``gpus`` setting into (count, device_ids): "all" -> (-1, ()), 2 -> (2, ()),
    "0,1", "device=0,1" or [0, 1] -> (None, ("0", "1")), "none"/0 -> (0, ())."""
    if value is None or value == "" or value == "auto":
        return None, ()
    # bool is an int in Python: `gpus=True` would otherwise silently mean one GPU.
    if isinstance(value, bool):
        raise ValueError("gpus must be 'all', a count or device ids, not a boolean")
    if isinstance(value, int):
        if value < -1:
            raise ValueError(f"gpus count must be >= 0, got {value}")
        return value, ()
    if isinstance(value, (list, tuple)):
        return None, tuple(str(v) for v in value)
    text = str(value).strip().lower()
    if text == "all":
        return -1, ()
    if text == "none":
        return 0, ()
    if text.isdigit():
        return int(text), ()
    raw = str(value).strip()
    if raw.lower().startswith("device="):  # docker's own spelling: --gpus device=0,1
        raw = raw[len("device=") :]
    ids = tuple(p.strip() for p in raw.split(",") if p.strip())
    if not ids:
        raise ValueError(f"cannot read gpus={value!r}: use 'all', a count, or ids like '0,1'")
    return None, ids
