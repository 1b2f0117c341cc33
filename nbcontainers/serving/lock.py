"""The serving image's lock: the kernel's exact versions of what the model needs (nothing the
session merely had), a CPU build of torch for a CPU image, and the model server's own pins.

Made with the same closure, hashes and rendering as a snapshot's lock (``recipe/lock.py``).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ExportError
from ..recipe.environment import Package, Snapshot
from ..recipe.lock import (
    dependency_closure,
    is_pytorch_label,
    local_labels,
    lockable,
    pytorch_index,
    read_lock,
    render_lock,
)

__all__ = ["GRPC_LOCK", "SAFETENSORS_LOCK", "SERVER_LOCK", "plan_lock"]

# What the server needs beyond the model (uvicorn and friends), compiled with hashes.
SERVER_LOCK = Path(__file__).parent / "image" / "requirements.lock"
# What --grpc adds (grpcio, protobuf), compiled against SERVER_LOCK.
GRPC_LOCK = Path(__file__).parent / "image" / "requirements-grpc.lock"
# What a torch model saved as safetensors adds (the library reads the weights).
SAFETENSORS_LOCK = Path(__file__).parent / "image" / "requirements-safetensors.lock"
# Distributions only a CUDA build of torch needs.
_CUDA_ONLY = ("nvidia-", "triton", "cuda-")


def plan_lock(
    snap: Snapshot, requires: list[str], gpu: bool, grpc: bool = False, safetensors: bool = False
) -> tuple[str, str | None]:
    """The serving image's lock: the kernel's exact versions of what the model needs, plus the
    server's own pins; and the extra index a local version label needs."""
    from ..pipsettings import read_pip_settings
    from ..recipe.hashes import published_hashes

    wanted = dependency_closure(snap, [*requires, "numpy"])
    lock = lockable(wanted)
    torch = next((p for p in lock if p.key == "torch"), None)
    if torch is not None and not gpu and "+" not in torch.version:
        # A CUDA build of torch in the kernel; the CPU image gets the same version's CPU build.
        lock = [p for p in lock if not p.key.startswith(_CUDA_ONLY)]
        lock[lock.index(torch)] = Package(
            name=torch.name, version=f"{torch.version}+cpu", kind="index", requires=torch.requires
        )
    blocked = [p for p in lock if p.kind in ("local", "editable")]
    if blocked:
        raise ExportError(
            "The model needs "
            + ", ".join(f"{p.name} (installed from {p.source or 'a local path'})" for p in blocked)
            + ", which the image can't install from an index. Install it from an index or a VCS "
            "URL in the kernel, or `%container snapshot --wheels` to vendor it, then export again."
        )
    # The server's own pins come with their hashes from its pip-compile lock.
    server, server_hashes = read_lock(SERVER_LOCK.read_text())
    for wanted_extra, path in ((grpc, GRPC_LOCK), (safetensors, SAFETENSORS_LOCK)):
        if wanted_extra:
            more, more_hashes = read_lock(path.read_text())
            server += [p for p in more if p.key not in {s.key for s in server}]
            server_hashes.update(more_hashes)
    have = {p.key for p in lock}  # the kernel's version wins where the model needs it too
    lock += [p for p in server if p.key not in have]
    hashes = published_hashes(
        [
            (p.name, p.version)
            for p in lock
            if p.kind == "index" and (p.name, p.version) not in server_hashes
        ],
        read_pip_settings(),
    )
    hashes.update(server_hashes)
    # A +cpu / +cuXXX build comes from PyTorch's own index; an empty build ARG skips it.
    extra = next((pytorch_index(x) for x in local_labels(lock) if is_pytorch_label(x)), None)
    title = "# nbcontainers-export lock: the kernel's exact versions of what the model needs"
    return render_lock(lock, hashes, [title]), extra
