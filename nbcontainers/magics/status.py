"""`%container status`: what a container kernel runs on and what it uses, as the runtime
reports it (:class:`~nbcontainers.runtimes.ContainerStats`); only formatting happens here."""

from __future__ import annotations

import argparse
import time
from typing import Any

from IPython.core.magic import Magics, magics_class

from ..runtimes import ContainerStats, GPURequest, ImageInfo
from .parser import Handler
from .state import NotebookState

__all__ = [
    "StatusMagics",
    "format_cpu",
    "format_digest",
    "format_duration",
    "format_gpus",
    "format_memory",
]


@magics_class
class StatusMagics(Magics):
    """The status theme: one subcommand, reading the kernel's runtime."""

    def __init__(self, shell: Any, state: NotebookState) -> None:
        super().__init__(shell)
        self.state = state

    def subcommands(self) -> dict[str, Handler]:
        return {"status": self.status}

    def status(self, args: argparse.Namespace) -> None:
        relay = self.state.existing(args.name)
        kernel, image, runtime = self.state.kernels.describe(relay)
        cid = relay.container_id or ""
        lines = [
            f"kernel      {relay.name} ({'active' if relay.name == self.state.active else 'idle'})",
            f"image       {image.name}: {image.ref}",
            f"digest      {format_digest(runtime.image_info(image.ref))}",
            f"container   {cid[:12]}  up {format_duration(time.time() - relay.started_at)}",
        ]
        # The slow call (Docker samples for about a second): made once, after the cheap ones.
        stats = runtime.stats(cid)
        lines += [
            f"cpu         {format_cpu(stats)}",
            f"memory      {format_memory(stats)}",
            # What the container was given, not what the host has: decided before the start
            # (the image's needs, the host's GPUs, the policy) as the provisioner decides.
            "gpus        " + format_gpus(kernel.gpus),
        ]
        print("\n".join(lines))


def format_gpus(request: GPURequest | None) -> str:
    if request is None:
        return "none"
    if request.device_ids:
        return "devices " + ",".join(request.device_ids)
    return "all" if request.count == -1 else str(request.count)


def format_digest(info: ImageInfo | None) -> str:
    """The image's registry digest where it has one (it was pulled or pushed), else its id."""
    if info is None:
        return "?"
    return str(info.repo_digests[0] if info.repo_digests else info.id)


def format_duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def format_cpu(stats: ContainerStats) -> str:
    """Percent of one CPU, as `top` shows it: 200.0% is two cores busy."""
    return "?" if stats.cpu_percent is None else f"{stats.cpu_percent:.1f}%"


def format_memory(stats: ContainerStats) -> str:
    if stats.memory_used is None or stats.memory_limit is None:
        return "?"
    return f"{stats.memory_used / 2**20:.0f} MiB of {stats.memory_limit / 2**30:.1f} GiB"
