"""A kernelspec as frontends without provisioners see it: the nbc-* spec without its
``metadata.kernel_provisioner``, so jupyter_client's LocalProvisioner runs its argv (as VS
Code, Zed and nteract do)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager


def plain_kernel_manager(folder: Path, name: str = "nbc-python", **changes: Any) -> KernelManager:
    """A KernelManager for a copy of kernelspec ``name`` (from the installed ones) under
    ``folder``, without provisioner metadata; ``changes`` update its kernel.json."""
    source = Path(KernelSpecManager().find_kernel_specs()[name])
    target = folder / name
    shutil.copytree(source, target)
    spec = json.loads((target / "kernel.json").read_text())
    spec["metadata"].pop("kernel_provisioner")
    spec.update(changes)
    (target / "kernel.json").write_text(json.dumps(spec))
    return KernelManager(
        kernel_name=name, kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(folder)])
    )
