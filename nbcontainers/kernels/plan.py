"""The launch plan: what one kernel container gets, decided from settings before anything runs.

:func:`plan_launch` turns the provisioner's settings (:class:`LaunchConfig`), one kernel
start (:class:`KernelStart`: command, cwd, environment, private folder, ports), the catalog
image, the engine's facts and the server's identity (:class:`Host`) into a frozen
:class:`LaunchPlan`: mounts, environment, user, network, working dir, GPUs, limits, where
the connection file goes, and the :class:`~nbcontainers.runtimes.base.ContainerSpec` that
follows from them. It writes nothing and calls no engine (it only looks at host paths it
would mount), so each policy here is tested without an engine; the provisioner writes the
private files and hands the spec to the runtime.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatch
from typing import Any

from ..catalog.entries import CatalogImage
from ..errors import ConfigError, Unsupported
from ..labels import (
    KERNEL_ID,
    OWNER,
    PRIVATE_DIR,
    SERVER_HOST,
    SERVER_PID,
    SERVER_STARTED,
)
from ..pipsettings import PipSettings, read_pip_settings
from ..runtimes.base import ContainerSpec, EngineFacts, GPURequest, Mount, Placement, placements
from .connection import PrivateDir
from .guards import NO_GPUS, RUNTIME_ENV, check_config, matches, parse_mount, refuse_env
from .home import KernelHome, home_for, kernel_name
from .identity import Host, kernel_user
from .limits import checked_cpus, checked_pids

__all__ = [
    "CONNECTION_FILE",
    "DEFAULT_ENV_ALLOWLIST",
    "DEFAULT_HOME_SIZE",
    "DEFAULT_PIDS_LIMIT",
    "DEFAULT_SHM_SIZE",
    "HOME",
    "IMAGE_LABEL",
    "PIP_CONF",
    "RUNTIME_ENV",
    "SHARED",
    "KernelStart",
    "LaunchConfig",
    "LaunchPlan",
    "check_config",
    "kernel_env",
    "parse_mount",
    "plan_launch",
]

# A tmpfs, writable whatever uid the kernel runs as: HOME only where no lasting home can be
# made (a cluster's kernels, a server without a data folder; see home.py), else scratch.
HOME = "/home/nbc"
CONNECTION_FILE = "/run/nbcontainers/kernel.json"
PIP_CONF = "/run/nbcontainers/pip.conf"
IMAGE_LABEL = "io.nbcontainers.image"
SHARED = "shared"  # the network setting that joins the owner's holder namespace (netns.py)
DEFAULT_SHM_SIZE = "2g"
DEFAULT_HOME_SIZE = "4g"
DEFAULT_PIDS_LIMIT = 4096
# Never the server's whole environment: under JupyterHub it carries the Hub's API token.
DEFAULT_ENV_ALLOWLIST = (
    "LANG",
    "LANGUAGE",
    "LC_*",
    "TZ",
    "TERM",
    "COLORTERM",
    "JPY_SESSION_NAME",
    "PIP_*",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
)
# Never mounted as the workspace: a notebook started from here gets only its private HOME.
# fmt: off
UNSAFE_WORKSPACES = frozenset({
    "/", "/etc", "/usr", "/var", "/var/run", "/run", "/proc", "/sys", "/dev", "/boot", "/bin",
    "/sbin", "/lib",
})
# fmt: on
# CA bundles the kernel's environment may point at: mounted at the same path so they resolve.
_CERT_VARIABLES = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
# Each engine limit (runtimes.base.LIMITS) and the provisioner setting that asks for it.
_LIMIT_SETTINGS = {"memory": "mem_limit", "cpus": "cpus", "pids": "pids_limit", "shm": "shm_size"}


@dataclass(frozen=True)
class LaunchConfig:
    """The provisioner settings that shape a container; each field is the trait of its name."""

    mem_limit: str = ""
    cpus: float = 0.0
    shm_size: str = DEFAULT_SHM_SIZE
    home_size: str = DEFAULT_HOME_SIZE  # the /home/nbc tmpfs (HOME only where none lasts)
    pids_limit: int = DEFAULT_PIDS_LIMIT
    extra_mounts: tuple[Any, ...] = ()  # 'host:container[:ro|rw]' strings or dicts
    env_allowlist: tuple[str, ...] = DEFAULT_ENV_ALLOWLIST
    env: Mapping[str, Any] = field(default_factory=dict)
    network: str = SHARED
    transport: str = "ipc"
    user: str = ""
    mount_workspace: bool = True
    pip_settings: bool = True
    # Where a cluster may run the kernel: rules as users write them (runtimes.base.
    # parse_placement, checked by plan_launch) or Placement values.
    placement: tuple[str | Placement, ...] = ()
    # Mounted instead of the notebook's folder when that lies inside it (the warm pool's
    # kernels must not depend on the folder): the kernel still starts in the notebook's.
    workspace_root: str = ""


@dataclass(frozen=True)
class KernelStart:
    """What one start of one kernel brings to the plan."""

    kernel_id: str
    command: tuple[str, ...]
    cwd: str | None
    env: Mapping[str, str]  # what Jupyter prepared: the server's environment and the spec's
    private_dir: PrivateDir
    spec_env: frozenset[str] = frozenset()  # names the kernelspec sets: passed as given
    ports: tuple[int, ...] = ()  # tcp: the host ports of the five channels
    started_at: float = 0.0  # time.time(); makes the container name unique across restarts


@dataclass(frozen=True)
class LaunchPlan:
    """Everything one kernel container gets; :meth:`container_spec` is what the engine runs."""

    image: CatalogImage
    command: tuple[str, ...]
    name: str
    labels: Mapping[str, str]
    env: Mapping[str, str]
    mounts: tuple[Mount, ...]
    working_dir: str
    user: str  # uid:gid
    network: str | None  # SHARED: join the owner's holder; resolved by the provisioner
    ports: Mapping[int, tuple[str, int]]
    gpus: GPURequest | None
    mem_limit: str | None
    nano_cpus: int | None
    shm_size: str | None
    pids_limit: int | None
    private_dir: PrivateDir  # its connection file is mounted at CONNECTION_FILE
    pip_conf: str | None = None  # the pip.conf to write into the private folder
    notes: tuple[str, ...] = ()  # warnings for the server log
    placement: tuple[Placement, ...] = ()
    home_size: str = DEFAULT_HOME_SIZE
    home: KernelHome | None = None  # the lasting ~ and identity; None: HOME is the tmpfs

    def container_spec(self, shared_netns: str | None = None) -> ContainerSpec:
        """The spec to run. ``shared_netns`` (``container:<id>``) is required, and used, only
        when the plan joins the owner's shared network namespace. First makes on the host what
        the spec mounts of the kernel's home (idempotent: every start, cold or pooled, calls
        this before its container runs)."""
        if self.home is not None:
            self.home.prepare()
        network = self.network
        if network == SHARED:
            if not shared_netns:
                raise ValueError("this plan joins the shared network: pass its container:<id>")
            network = shared_netns
        return ContainerSpec(
            image=self.image.ref,
            command=self.command,
            name=self.name,
            labels=self.labels,
            env=self.env,
            mounts=self.mounts,
            tmpfs=(
                {}  # a home mounted over the scratch folder's path
                if self.home is not None and self.home.path == HOME
                else {HOME: f"rw,exec,mode=1777,size={self.home_size}"}
            ),
            working_dir=self.working_dir,
            user=self.user,
            network_mode=network,
            ports=self.ports,
            gpus=self.gpus,
            mem_limit=self.mem_limit,
            nano_cpus=self.nano_cpus,
            shm_size=self.shm_size,
            pids_limit=self.pids_limit,
            placement=self.placement,
        )


def plan_launch(
    config: LaunchConfig,
    kernel: KernelStart,
    image: CatalogImage,
    facts: EngineFacts,
    host: Host,
    gpus: GPURequest | None = None,
    read_pip: Callable[[Mapping[str, str]], PipSettings] = read_pip_settings,
    refused_env: Sequence[str] = (),
) -> LaunchPlan:
    """Decide the container for one kernel start; raise before anything runs when the
    settings are invalid or ask for what the engine can't do.

    ``gpus`` is what :func:`~nbcontainers.kernels.gpu_request.gpu_request` decided; ``read_pip``
    reads the host's pip settings as the kernel's environment sees them (a test passes its
    own); ``refused_env`` are more variable patterns nobody may set (the policy's).
    """
    notes: list[str] = []
    config = check_config(config, refused_env)
    refused = (*RUNTIME_ENV, *refused_env)
    spec_env = {k: v for k, v in kernel.env.items() if k in kernel.spec_env}
    refuse_env(spec_env, refused, "the kernelspec's env")
    # The server's own variables pass by the allowlist; a runtime's are dropped, not refused
    # (a server in an nvidia/cuda image has NVIDIA_VISIBLE_DEVICES=all in its environment).
    server = {k: v for k, v in kernel.env.items() if not matches(k, refused)}
    env = kernel_env(server, kernel.spec_env, config.env_allowlist, config.env, image.name)
    if gpus is None:
        env.update(NO_GPUS)
    private = kernel.private_dir
    mounts = [Mount(str(private.connection_file), CONNECTION_FILE, read_only=True)]
    if config.transport == "ipc":
        # Both sides bind and connect the same socket paths, so they mount at the same path.
        mounts.append(Mount(str(private.sockets), str(private.sockets), read_only=False))
    workdir = HOME
    if config.mount_workspace and kernel.cwd:
        real = os.path.realpath(kernel.cwd)
        root = os.path.realpath(config.workspace_root) if config.workspace_root else real
        if root in UNSAFE_WORKSPACES or not (real + "/").startswith(root.rstrip("/") + "/"):
            root = real  # a root that can't be mounted, or one the notebook is not in
        if real in UNSAFE_WORKSPACES:
            notes.append(f"Not mounting {real} into the kernel container: too broad.")
        else:
            # Same path inside: paths in the notebook and in tracebacks mean the same file.
            mounts.append(Mount(root, root, read_only=False))
            workdir = real
    pip_conf = None
    if config.pip_settings:
        settings = read_pip(env)
        pip_conf = settings.render()
        mounts.append(Mount(str(private.pip_conf), PIP_CONF, read_only=True))
        env["PIP_CONFIG_FILE"] = PIP_CONF
        if facts.remote and settings.local_paths():
            # Folders of this host (find-links, a local index) are not on a cluster's nodes.
            notes.append(
                f"Not mounting pip's local folders ({', '.join(settings.local_paths())}) into "
                "a kernel on another host; the pip.conf still names them."
            )
        else:
            mounts.extend(Mount(path, path, read_only=True) for path in settings.local_paths())
    for var in _CERT_VARIABLES:
        cert = env.get(var)
        if cert and os.path.isfile(cert) and all(m.target != cert for m in mounts):
            mounts.append(Mount(cert, cert, read_only=True))
    mounts.extend(parse_mount(item) for item in config.extra_mounts)
    user = kernel_user(config.user, host, rootless=facts.rootless)
    home = home_for(user, host, kernel.env, image, mounts, facts)
    if home is not None:
        mounts.extend(home.mounts())
        env.update(home.env())
        if home.uid == 0 and not image.user_defined:
            # Root may write the image's own site-packages, lost with the container: pip
            # installs for the user instead (a catalog image's Python is no virtualenv,
            # where --user is refused).
            env["PIP_USER"] = "1"
        if workdir == HOME:
            workdir = home.path
    else:  # HOME stays the tmpfs; the kernel still knows its user's name
        name = kernel_name(host.uid, None, kernel.env, host.owner)
        env.update({"USER": name, "LOGNAME": name})

    network: str | None = config.network
    if network == SHARED and config.transport == "tcp":
        network = "bridge"  # published ports belong to a namespace of its own
    ports = {}
    if config.transport == "tcp" and config.network != "host":
        # A cluster node publishes on its own address (Curve keeps the traffic private).
        ip = "0.0.0.0" if facts.remote else "127.0.0.1"
        ports = {port: (ip, port) for port in kernel.ports}
    placement = placements(config.placement)  # a rule no engine knows is a ConfigError
    if placement and not facts.placement:
        raise ConfigError(
            f"'placement' ({', '.join(map(str, placement))}) needs a cluster runtime, but the "
            f"{facts.name} engine at {facts.endpoint} runs everything here. Set "
            "runtime='swarm' (on a swarm manager) or 'kubernetes', or remove 'placement'."
        )
    if gpus is not None and facts.gpu_mode == "none":
        raise Unsupported(
            f"Kernel 'nbc-{image.name}' asks for GPUs, but the {facts.name} engine at "
            f"{facts.endpoint} can't hand GPUs to a container. Remove the 'gpus' setting"
            + (f" or use {image.cpu_variant!r}" if image.cpu_variant else "")
            + ", or run on an engine with GPU support"
            + (f"; to give it GPUs: {facts.gpu_setup}." if facts.gpu_setup else ".")
        )
    limits = _enforceable_limits(config, facts, notes)
    labels = {
        KERNEL_ID: kernel.kernel_id,
        OWNER: host.owner,
        SERVER_HOST: host.hostname,
        SERVER_PID: str(host.pid),
        SERVER_STARTED: host.started,
        PRIVATE_DIR: str(private.path),
        IMAGE_LABEL: image.name,
    }
    return LaunchPlan(
        image=image,
        command=kernel.command,
        # The time suffix keeps a restart's new container from colliding with the old name.
        name=f"nbc-{image.name}-{kernel.kernel_id[:8]}-{int(kernel.started_at) % 100000}",
        labels=labels,
        env=env,
        mounts=tuple(mounts),
        working_dir=workdir,
        user=user,
        network=network,
        ports=ports,
        gpus=gpus,
        private_dir=private,
        pip_conf=pip_conf,
        notes=tuple(notes),
        placement=placement,
        home_size=config.home_size,
        home=home,
        **limits,
    )


def kernel_env(
    env: Mapping[str, str],
    spec_env: frozenset[str],
    allowlist: tuple[str, ...],
    extra: Mapping[str, Any],
    image_name: str,
) -> dict[str, str]:
    """The kernel's environment: allowlisted names of ``env``, the kernelspec's own, the
    ``env`` setting, then what nbcontainers sets itself."""
    allowed = {
        k: v for k, v in env.items() if k in spec_env or any(fnmatch(k, pat) for pat in allowlist)
    }
    # The host's pip.conf path means nothing inside; the kernel gets its own copy instead.
    allowed.pop("PIP_CONFIG_FILE", None)
    allowed.update({str(k): str(v) for k, v in extra.items()})
    allowed.update({"HOME": HOME, "NBCONTAINERS_IMAGE": image_name, "PYTHONUNBUFFERED": "1"})
    return allowed


def _enforceable_limits(
    config: LaunchConfig, facts: EngineFacts, notes: list[str]
) -> dict[str, Any]:
    """The limits to ask the engine for; refuse those it can't enforce (``Unsupported``),
    except the defaults nobody asked for, which are left out with a note: a rootless engine on
    cgroup v1 enforces no pids limit, and a kernel must still start there by default."""
    asked: dict[str, Any] = {
        "memory": config.mem_limit or None,
        "cpus": checked_cpus(config.cpus),
        "pids": checked_pids(config.pids_limit),
        "shm": config.shm_size or None,
    }
    defaults = {"pids": DEFAULT_PIDS_LIMIT, "shm": DEFAULT_SHM_SIZE}
    refused = []
    for limit, value in asked.items():
        if value is None or limit in facts.limits:
            continue
        setting = _LIMIT_SETTINGS[limit]
        if defaults.get(limit) == value:
            notes.append(
                f"The {facts.name} engine can't enforce {limit} limits: the default "
                f"{setting}={value!r} is not applied."
            )
            asked[limit] = None
        else:
            refused.append(f"{limit} ({setting}={getattr(config, setting)!r})")
    if refused:
        raise Unsupported(
            f"This kernel asks for {' and '.join(refused)} limits, but the {facts.name} engine "
            f"at {facts.endpoint}{' (rootless)' if facts.rootless else ''} can't enforce "
            f"{'them' if len(refused) > 1 else 'it'} (it enforces: "
            f"{', '.join(sorted(facts.limits)) or 'none'}). Remove the setting, or use an engine "
            "that can: a rootless engine needs cgroup v2 with controller delegation."
        )
    return {
        "mem_limit": asked["memory"],
        "nano_cpus": asked["cpus"],
        "pids_limit": asked["pids"],
        "shm_size": asked["shm"],
    }
