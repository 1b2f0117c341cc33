"""Each GPU's utilisation and memory as a container kernel sees them: NVML's figures through
``nvidia-smi`` run inside the container (an exec through the runtime seam), so they are the
GPUs the engine handed to that kernel, never the host's list or a guess."""

from __future__ import annotations

from ..runtimes.base import ContainerRuntime
from .records import GPUFigures

__all__ = ["QUERY", "container_gpus", "parse_query"]

QUERY = (
    "nvidia-smi",
    "--query-gpu=index,name,utilization.gpu,memory.used,memory.total",
    "--format=csv,noheader,nounits",
)
# The shell's "command not found": the container has no NVIDIA driver mounted, so no GPU.
NOT_FOUND = (126, 127)
MIB = 1 << 20


def _number(text: str) -> float | None:
    try:
        return float(text.strip())
    except ValueError:  # "[N/A]", "[Not Supported]" on some boards
        return None


def parse_query(output: str) -> list[GPUFigures]:
    """``nvidia-smi --query-gpu`` CSV (memory in MiB) as records; unparsable lines skipped."""
    found: list[GPUFigures] = []
    for line in output.splitlines():
        cells = [c.strip() for c in line.split(",")]
        if len(cells) != 5 or not cells[0].isdigit():
            continue
        used, total = _number(cells[3]), _number(cells[4])
        found.append(
            {
                "index": int(cells[0]),
                "name": cells[1],
                "utilization": _number(cells[2]),
                "memory_used": int(used * MIB) if used is not None else None,
                "memory_total": int(total * MIB) if total is not None else None,
            }
        )
    return found


def container_gpus(runtime: ContainerRuntime, container_id: str) -> list[GPUFigures] | None:
    """The container's GPUs: [] where it has none (no ``nvidia-smi`` in it: the engine mounts
    the driver's tools only into containers it gives GPUs), None where the exec failed or
    NVML gave nothing readable (a driver problem is not "no GPU")."""
    try:
        result = runtime.exec(container_id, ["sh", "-c", " ".join(QUERY)])
    except Exception:  # not running, or an engine without exec: unknown
        return None
    if result.exit_code in NOT_FOUND:
        return []
    if result.exit_code != 0:
        return None
    return parse_query(result.output) or None
