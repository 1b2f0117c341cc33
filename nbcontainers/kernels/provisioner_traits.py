"""The settings users write for container kernels, as traitlets.

They are the :class:`~nbcontainers.kernels.provisioner.ContainerProvisioner`'s traits (this
class is its base), so users write ``c.ContainerProvisioner.gpus = "all"`` in a Jupyter
config file or ``{"gpus": "all"}`` in a kernelspec's ``metadata.kernel_provisioner.config``;
the kernelspec wins. What a container gets from them is decided by
:func:`~nbcontainers.kernels.plan.plan_launch`.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

from traitlets import Any as AnyTrait
from traitlets import Bool, CaselessStrEnum, Dict, Float, HasTraits, Integer, List, Unicode

from .curve import ENCRYPTION_MODES
from .images import MISSING_IMAGE_POLICIES
from .plan import (
    DEFAULT_ENV_ALLOWLIST,
    DEFAULT_HOME_SIZE,
    DEFAULT_PIDS_LIMIT,
    DEFAULT_SHM_SIZE,
    SHARED,
    LaunchConfig,
)
from .starter import StartSettings

__all__ = ["ProvisionerTraits"]


class ProvisionerTraits(HasTraits):
    """The container kernel's settings, each a trait users configure by its name."""

    image = Unicode("", config=True, help="Catalog image name (e.g. 'python', 'pytorch-cpu').")
    gpus = AnyTrait(
        None,
        allow_none=True,
        config=True,
        help="GPUs to expose: 'all', a count, or device ids ('0,1'). "
        "Default: all GPUs for GPU images, none otherwise.",
    )
    mem_limit = Unicode("", config=True, help="Memory limit, e.g. '8g' (default: none).")
    cpus = Float(0.0, config=True, help="CPU limit in cores, e.g. 2.5 (default: none).")
    shm_size = Unicode(
        DEFAULT_SHM_SIZE,
        config=True,
        help="Size of /dev/shm; Docker's 64 MB default breaks PyTorch DataLoaders.",
    )
    home_size = Unicode(
        DEFAULT_HOME_SIZE,
        config=True,
        help="Size of the kernel's HOME, a tmpfs (it holds ~/.local, pip's user installs).",
    )
    pids_limit = Integer(
        DEFAULT_PIDS_LIMIT, config=True, help="Maximum number of processes in the container."
    )
    extra_mounts: List[Any] = List(
        config=True,
        help="More bind mounts: 'host:container[:ro|rw]' strings (read-only by default).",
    )
    env_allowlist = List(
        Unicode(),
        list(DEFAULT_ENV_ALLOWLIST),
        config=True,
        help="Server environment variables (glob patterns) the kernel may see.",
    )
    env = Dict(config=True, help="Extra environment variables set in the kernel container.")
    network = Unicode(
        SHARED,
        config=True,
        help="Container network: 'shared' (default: the owner's kernels join one bridge-"
        "networked namespace, which starts faster than a namespace each; with transport "
        "'tcp' this means 'bridge'), 'bridge', 'none', 'host' or a network name.",
    )
    transport = CaselessStrEnum(
        ["ipc", "tcp"],
        "ipc",
        config=True,
        help="'ipc': ZeroMQ over Unix sockets in a private folder (fastest, "
        "no TCP port at all); 'tcp': ports published on 127.0.0.1.",
    )
    startup_timeout = Float(
        60.0, config=True, help="Seconds a (re)start may take before Jupyter gives up."
    )
    missing_image = CaselessStrEnum(
        list(MISSING_IMAGE_POLICIES),
        "error",
        config=True,
        help="When the image is not present: fail at once with the "
        "command that fixes it, or build/pull it (with progress "
        "in the log).",
    )
    user = Unicode("", config=True, help="uid:gid to run as (default: the server's own).")
    mount_workspace = Bool(
        True, config=True, help="Mount the notebook's folder at the same path as the working dir."
    )
    pip_settings = Bool(
        True, config=True, help="Give the kernel the host's pip settings (read-only)."
    )
    runtime_name = Unicode(
        "auto",
        config=True,
        help="Container engine: 'auto' (DOCKER_HOST, else your rootless engine, else the "
        "system one), 'docker', 'podman', or another registered runtime.",
    )
    stop_timeout = Float(5.0, config=True, help="Grace period before a stopped kernel is killed.")
    placement = List(
        Unicode(),
        config=True,
        help="Where a cluster runtime may place the kernel, as Swarm constraints: "
        "'node.labels.gpu==true', 'node.hostname==gpu-1' (runtime 'swarm' only).",
    )
    encryption = CaselessStrEnum(
        list(ENCRYPTION_MODES),
        "auto",
        config=True,
        help="CurveZMQ on the kernel's channels, on top of HMAC signing: 'auto' (when the "
        "kernel may run on another host), 'curve' (always) or 'none'.",
    )
    pool_size = Integer(
        0,
        config=True,
        help="Warm pool: keep this many idle kernel containers started per image (and user, "
        "mounts, settings), so a start takes one in ~0.025 s; 0 (default) turns it off. "
        "With a pool the kernel mounts workspace_root and starts in the notebook's folder.",
    )
    pool_warm = List(
        Unicode(),
        default_value=[],
        config=True,
        help="Kernelspecs (e.g. ['nbc-python']) whose pool the server fills as it starts, so "
        "that its first notebook's kernel is pooled too; needs the server extension "
        "nbcontainers.kernels.warmup. Read from the server's config only.",
    )
    pool_max_memory = Unicode(
        "2g",
        config=True,
        help="Memory all idle pooled kernels of this server may use together, e.g. '2g' "
        "(an idle nbc-python kernel uses about 36 MiB); '' for no cap.",
    )
    workspace_root = Unicode(
        "",
        config=True,
        help="Folder mounted (at the same path) for kernels started inside it, instead of "
        "the notebook's own folder. Default: none, or with a pool the server's root_dir "
        "(else your home).",
    )

    def launch_values(self, server_root: str = "") -> dict[str, Any]:
        """The traits named as :class:`LaunchConfig`'s fields (lists as tuples); the
        provisioner adds ``transport`` and ``encryption`` to these traits.

        With a warm pool and no ``workspace_root``, the root is the server's (``server_root``)
        or ``~``: pooled kernels exist before their notebook, so they mount the folder above,
        and one pool serves every notebook under it (a notebook elsewhere mounts its own
        folder and starts cold)."""
        values = {
            f.name: getattr(self, f.name) for f in fields(LaunchConfig) if hasattr(self, f.name)
        }
        if self.pool_size > 0 and not self.workspace_root:
            values["workspace_root"] = str(server_root or Path.home())
        return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}

    def frozen(self, launch: LaunchConfig) -> StartSettings:
        """The traits, frozen for one start with ``launch`` (the provisioner's and the
        launcher's start service's, which differ only in their launch settings)."""
        return StartSettings(
            image=self.image,
            launch=launch,
            gpus=self.gpus,
            missing_image=self.missing_image,
            runtime_name=self.runtime_name,
            startup_timeout=self.startup_timeout,
            pool_size=self.pool_size,
            pool_max_memory=self.pool_max_memory,
        )
