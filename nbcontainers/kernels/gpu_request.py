"""Which GPUs a kernel container gets: the ``gpus`` setting checked against the image's needs
and the host's GPUs and driver, before anything starts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..catalog.entries import CatalogImage
from ..errors import ConfigError, GPUUnavailable
from ..hostgpus import HostGPUs, check_cuda, detect_gpus, parse_gpu_request
from ..runtimes.base import GPURequest
from ..runtimes.cdi import host_gpus

__all__ = ["gpu_request"]


def gpu_request(
    image: CatalogImage,
    setting: Any,
    detect: Callable[[], HostGPUs] | None = None,
    remote: bool = False,
) -> GPURequest | None:
    """The GPUs a kernel of ``image`` gets for the ``gpus`` setting ('all', a count, ids, or
    None for the image's default); raise where the host can't give them.

    The host is probed (``detect``, :func:`~nbcontainers.hostgpus.detect_gpus` by default) only
    when a GPU is wanted: a CPU image with no setting starts without touching NVML; never for
    a ``remote`` engine, whose nodes hold the GPUs.
    """
    try:
        count, ids = parse_gpu_request(setting)
    except ValueError as exc:
        raise ConfigError(f"Bad 'gpus' setting: {exc}.") from None
    if count == 0 and not ids:
        if image.gpu:
            raise GPUUnavailable(
                f"Image {image.name!r} needs a GPU but gpus={setting!r}."
                + (f" Use {image.cpu_variant!r} for CPU work." if image.cpu_variant else "")
            )
        return None
    if count is None and not ids and not image.gpu:
        return None  # default for a CPU image: no GPU
    if remote:  # the kernel runs on a cluster node: this host's GPUs say nothing; the engine checks
        return GPURequest(count=-1 if count is None else count, device_ids=ids)
    host = (detect or detect_gpus)()
    if not host.gpus and detect is None:
        # No NVML and no nvidia-smi (a host whose engine gets its GPUs from a CDI spec, or a
        # minimal host): the spec's devices and driver files are the same facts.
        host = host_gpus() or host
    if image.gpu:
        # The driver must be new enough for the image's CUDA, or torch fails only at first use.
        check_cuda(image.name, image.cuda, host, image.cpu_variant)
    elif not host.gpus:
        raise GPUUnavailable(
            f"gpus={setting!r} was asked for, but this host has no NVIDIA GPU "
            f"({host.detail or 'none detected'}). Remove the 'gpus' setting."
        )
    # No count and no ids: a GPU image's default, every GPU (-1, the engines' "all").
    return GPURequest(count=-1 if count is None else count, device_ids=ids)
